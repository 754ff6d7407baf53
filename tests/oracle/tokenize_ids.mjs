// tokenize_ids.mjs: llama.cpp, run live, still gives the token ids stored in an oracle file such as
// tests/data/vocab/exaone4.ids.json ({"cases": [{"name", "text", "parse_special", "ids"}]}).
//
// Usage: node tests/oracle/tokenize_ids.mjs VOCAB.gguf IDS.json
// Prints "ok N/N" (exit 0) or the cases that differ (exit 1). llama_tokenize with
// add_special = false and parse_special as the case says; node-llama-cpp is a test oracle only.
import {getLlama} from "node-llama-cpp";
import fs from "fs";

const [vocabPath, idsPath] = process.argv.slice(2);
const cases = JSON.parse(fs.readFileSync(idsPath, "utf8")).cases;
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: vocabPath, vocabOnly: true});
let ok = 0;
for (const c of cases) {
    const ids = Array.from(model.tokenize(c.text, c.parse_special));
    if (ids.join(",") === c.ids.join(",")) ok++;
    else console.log(`differs: ${c.name}`);
}
console.log(`${ok === cases.length ? "ok" : "bad"} ${ok}/${cases.length}`);
await model.dispose();
process.exit(ok === cases.length ? 0 : 1);
