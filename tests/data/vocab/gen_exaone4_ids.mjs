// gen_exaone4_ids.mjs: exaone4.ids.json, llama.cpp's token ids for Korean texts and for the EXAONE
// 4.0 chat template's Korean renderings, with the real EXAONE 4.0 vocabulary (exaone4.gguf).
//
// Run with the oracle that scripts/setup installs (the script must sit next to a node_modules):
//   cp tests/data/vocab/gen_exaone4_ids.mjs tests/oracle/ && node tests/oracle/gen_exaone4_ids.mjs $PWD
// node-llama-cpp's model.tokenize(text, special) is llama_tokenize(add_special = false,
// parse_special = special); model.detokenize(ids, true) is llama_detokenize with special tokens
// rendered, which for this vocabulary also applies llama.cpp's clean-up of spaces before
// punctuation (" !" -> "!"): HF's tokenizer_config.json says clean_up_tokenization_spaces false, so
// the field llama_cpp_detok_same records where llama.cpp's text differs from the input; nuri must
// give back the input itself. Cases:
//   kor-<i>           the Korean cases of kor.inp (parse_special off, as for user text)
//   vimtutor-ko, pretok-probe, chat-specials
//                     ../tokenizer/<name>.txt, once plain and once with special tokens parsed
//   exaone-markers    EXAONE's special-token texts among Korean words, plain and parsed
//   tpl-<case>        every rendering ("expected") of
//                     ../templates-korean/LGAI-EXAONE-EXAONE-4.0-1.2B.cases.json, with special
//                     tokens parsed, as llama.cpp tokenizes a chat prompt
import {getLlama} from "node-llama-cpp";
import fs from "fs";

const repo = process.argv[2];
const D = `${repo}/tests/data`;
const cases = [];
const kor = fs.readFileSync(`${D}/vocab/kor.inp`, "utf8").split("\n__ggml_vocab_test__\n");
kor.pop();
kor.forEach((text, i) => cases.push({name: `kor-${i}`, parse_special: false, text}));
for (const t of ["vimtutor-ko", "pretok-probe", "chat-specials"]) {
    const text = fs.readFileSync(`${D}/tokenizer/${t}.txt`, "utf8");
    cases.push({name: t, parse_special: false, text});
    cases.push({name: `${t}.special`, parse_special: true, text});
}
// EXAONE's own markers inside user text (written for nuri): control tokens stay text unless special
// tokens are parsed; user-defined ones (<think>, <tool_call>, runs of spaces and tabs) never do
const markers = "[BOS][|system|]시스템[|endofturn|]\n[|user|]질문: <think>생각</think> 그리고 " +
    "<tool_call>{\"name\": \"날씨\"}</tool_call>\t\t\t탭  두 칸     다섯 칸[|endofturn|][EOS]" +
    "<|endoftext|>[unused0][extra_id_7]PI:EMAIL [|assistant|]<tool_result>결과</tool_result>[PAD][UNK]";
cases.push({name: "exaone-markers", parse_special: false, text: markers});
cases.push({name: "exaone-markers.special", parse_special: true, text: markers});
const tpl = JSON.parse(fs.readFileSync(`${D}/templates-korean/LGAI-EXAONE-EXAONE-4.0-1.2B.cases.json`, "utf8"));
for (const c of tpl)
    if (typeof c.expected === "string") cases.push({name: `tpl-${c.name}`, parse_special: true, text: c.expected});

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: `${D}/vocab/exaone4.gguf`, vocabOnly: true});
let same = 0;
for (const c of cases) {
    c.ids = Array.from(model.tokenize(c.text, c.parse_special));
    c.llama_cpp_detok_same = model.detokenize(c.ids, true) === c.text;
    same += c.llama_cpp_detok_same;
}
const pkg = new URL("node_modules/node-llama-cpp/package.json", import.meta.url);
const version = JSON.parse(fs.readFileSync(pkg, "utf8")).version;
const out = {
    vocab: "exaone4.gguf",
    tool: `node-llama-cpp ${version} (llama.cpp ${llama.llamaCppRelease.release}), vocabOnly, CPU`,
    cases,
};
fs.writeFileSync(`${D}/vocab/exaone4.ids.json`, JSON.stringify(out, null, 0).replace(/\},\{"name"/g, '},\n{"name"') + "\n");
console.log(`${cases.length} cases, ${cases.reduce((s, c) => s + c.ids.length, 0)} ids; ` +
            `llama.cpp\'s detokenize gives the text back for ${same}`);
await model.dispose();
