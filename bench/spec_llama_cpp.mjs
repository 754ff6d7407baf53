// spec_llama_cpp.mjs: llama.cpp's speculative decoding, for bench/spec.sh: greedy generation of N
// tokens after a prompt, plain, with prompt lookup (InputLookupTokenPredictor) and with a draft
// model (DraftSequenceTokenPredictor), through the npm package node-llama-cpp (its token
// predictors drive llama.cpp's batched verification; installed in tests/oracle/node_modules; run
// from the repository root). CPU only. Never downloads or builds llama.cpp.
//
// Usage: node bench/spec_llama_cpp.mjs MODEL.gguf PROMPT_FILE N THREADS [plain|lookup|DRAFT.gguf]
// Prints one JSON line: {"mode", "tokens", "seconds", "tokens_per_s", "validated", "refuted"}.
// Speed is that of the tokens after the first (the first comes from the prompt's pass): N - 1
// tokens over the time from the first token out to the last, as nuri run -v measures it.
import {createRequire} from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(path.resolve("tests/oracle/package.json"));
const {getLlama, InputLookupTokenPredictor, DraftSequenceTokenPredictor} =
    await import(require.resolve("node-llama-cpp"));

const [modelPath, promptFile, nArg, tArg, mode = "plain"] = process.argv.slice(2);
if (!modelPath || !promptFile || !nArg || !tArg) {
    console.error("usage: node bench/spec_llama_cpp.mjs MODEL PROMPT_FILE N THREADS [plain|lookup|DRAFT]");
    process.exit(2);
}
const n = Number(nArg), threads = Number(tArg);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const prompt = model.tokenize(fs.readFileSync(promptFile, "utf8"), true);
const contextSize = prompt.length + n + 64;
let predictor;
if (mode === "lookup") {
    predictor = new InputLookupTokenPredictor({predictionLength: {min: 1, max: 8}});
} else if (mode !== "plain") {
    const draft = await llama.loadModel({modelPath: mode, gpuLayers: 0});
    const dctx = await draft.createContext({contextSize, threads, flashAttention: false});
    predictor = new DraftSequenceTokenPredictor(dctx.getSequence(), {maxTokens: 8, minConfidence: 0});
}
const ctx = await model.createContext({contextSize, threads, flashAttention: false,
                                       batchSize: Math.max(64, prompt.length)});
const seq = ctx.getSequence(predictor ? {tokenPredictor: predictor} : {});
const now = () => Number(process.hrtime.bigint()) / 1e9;
let got = 0, t0 = 0;
for await (const t of seq.evaluate(prompt, {temperature: 0})) {
    void t;
    if (++got === 1) t0 = now();
    if (got >= n) break;
}
const dt = now() - t0;
const tp = seq.tokenPredictions;
console.log(JSON.stringify({mode: mode === "plain" || mode === "lookup" ? mode : "draft",
                            tokens: got, seconds: dt, tokens_per_s: (got - 1) / dt,
                            validated: tp.validated, refuted: tp.refuted}));
process.exit(0);
