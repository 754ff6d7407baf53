// gen_pre_ids.mjs: pre-<pre>.llama-bpe.ids, llama.cpp's ids for pretok-probe.txt and vimtutor-ko.txt
// (one line each) with the Llama 3 vocabulary under every pre-tokenizer. For each PRE, first
//   python3 tests/data/tokenizer/repre.py tests/data/vocab/ggml-vocab-llama-bpe.gguf DIR/PRE.gguf PRE
// then (set up as in gen_ids.mjs): node gen_pre_ids.mjs <repo> DIR PRE...
import {getLlama} from "node-llama-cpp";
import fs from "fs";
const [repo, dir, ...pres] = process.argv.slice(2);
const T = `${repo}/tests/data/tokenizer`;
const texts = ["pretok-probe", "vimtutor-ko"].map(t => fs.readFileSync(`${T}/${t}.txt`, "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
for (const p of pres) {
    const model = await llama.loadModel({modelPath: `${dir}/${p}.gguf`, vocabOnly: true});
    fs.writeFileSync(`${T}/pre-${p}.llama-bpe.ids`,
                     texts.map(s => model.tokenize(s, false).map(x => " " + x).join("")).join("\n") + "\n");
    await model.dispose();
}
