// gen_unicode_random_out.mjs: writes unicode-random.<vocab>.out, llama.cpp's ids for every case of
// unicode-random.inp (add_special = false, parse_special = false), through node-llama-cpp; set
// up as in gen_ids.mjs, then: node gen_unicode_random_out.mjs <repo>
import {getLlama} from "node-llama-cpp";
import fs from "fs";
const repo = process.argv[2];
const V = `${repo}/tests/data/vocab`, T = `${repo}/tests/data/tokenizer`;
const cases = fs.readFileSync(`${T}/unicode-random.inp`, "utf8").split("\n__ggml_vocab_test__\n");
cases.pop();
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
for (const v of ["llama-bpe", "llama-spm", "qwen2", "gpt-2", "phi-3", "deepseek-llm"]) {
    const model = await llama.loadModel({modelPath: `${V}/ggml-vocab-${v}.gguf`, vocabOnly: true});
    fs.writeFileSync(`${T}/unicode-random.${v}.out`,
                     cases.map(c => model.tokenize(c, false).map(x => " " + x).join("")).join("\n") + "\n");
    await model.dispose();
}
