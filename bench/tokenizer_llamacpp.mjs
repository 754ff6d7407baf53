// tokenizer_llamacpp.mjs: llama.cpp's tokenizer throughput on the same text, through node-llama-cpp
// (for comparison only; see bench/tokenizer.sh). Prints the same kind of line as tokenizer_bench.
//   node tokenizer_llamacpp.mjs MODEL.gguf TEXT MB
// Includes the JS <-> C++ string/array conversion that node-llama-cpp adds around llama_tokenize.
import {getLlama} from "node-llama-cpp";
import fs from "fs";
const [model_path, text_path, mb] = process.argv.slice(2);
const unit = fs.readFileSync(text_path);
const want = Math.floor(parseFloat(mb || "4") * 1024 * 1024);
const parts = [];
for (let len = 0; len + unit.length <= want; len += unit.length) parts.push(unit);
const buf = Buffer.concat(parts), text = buf.toString("utf8");
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: model_path, vocabOnly: true});
let best = 1e9, n = 0;
for (let rep = 0; rep < 3; rep++) {
    const t0 = process.hrtime.bigint();
    n = model.tokenize(text, false).length;
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    if (dt < best) best = dt;
}
const name = model_path.split("/").pop();
console.log(`${name.padEnd(28)} tokenize ${(buf.length / 1e6 / best).toFixed(2).padStart(7)} MB/s ` +
            `${(n / best).toFixed(0).padStart(10)} tok/s   (llama.cpp via node-llama-cpp, ${n} tokens)`);
await model.dispose();
