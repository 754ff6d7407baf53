// gen_ids.mjs: regenerates the <text>.<vocab>[.special].ids files with llama.cpp, through the npm
// package node-llama-cpp (never a dependency of nuri; run it by hand from a scratch directory):
//   mkdir /tmp/nlc && cd /tmp/nlc && npm i -E --omit=optional node-llama-cpp@3.21.1 \
//       @node-llama-cpp/linux-x64@3.21.1
//   cp <repo>/tests/data/tokenizer/gen_ids.mjs . && node gen_ids.mjs <repo> vimtutor-ko ...
// model.tokenize(text, false) is llama_tokenize(add_special = false, parse_special = false);
// model.tokenize(text, true) the same with parse_special = true. It also checks that it
// reproduces llama.cpp's own ggml-vocab-*.gguf.inp/.out cases (the same convention).
import {getLlama} from "node-llama-cpp";
import fs from "fs";
const repo = process.argv[2];
const V = `${repo}/tests/data/vocab`, T = `${repo}/tests/data/tokenizer`;
const vocabs = ["llama-bpe", "llama-spm", "qwen2", "gpt-2", "phi-3", "deepseek-llm"];
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
for (const v of vocabs) {
    const model = await llama.loadModel({modelPath: `${V}/ggml-vocab-${v}.gguf`, vocabOnly: true});
    const inp = fs.readFileSync(`${V}/ggml-vocab-${v}.gguf.inp`, "utf8").split("\n__ggml_vocab_test__\n");
    inp.pop();
    const out = fs.readFileSync(`${V}/ggml-vocab-${v}.gguf.out`, "utf8").split("\n");
    const ok = inp.filter((c, i) => model.tokenize(c, false).map(x => " " + x).join("") === out[i]).length;
    console.log(`${v}: llama.cpp's own cases ${ok}/${inp.length}`);
    for (const t of process.argv.slice(3)) {
        const s = fs.readFileSync(`${T}/${t}.txt`, "utf8");
        for (const special of [false, true])
            fs.writeFileSync(`${T}/${t}.${v}${special ? ".special" : ""}.ids`,
                             model.tokenize(s, special).map(x => " " + x).join("") + "\n");
    }
    await model.dispose();
}
