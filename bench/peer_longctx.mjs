// peer_longctx.mjs: llama.cpp's decode speed after a long context, for bench/longctx.sh.
//
// Usage: node bench/peer_longctx.mjs MODEL.gguf DEPTH N_GEN THREADS KV_K KV_V FA
// Drives llama.cpp through node-llama-cpp (tests/oracle/node_modules; run from the repository
// root), CPU only: the context holds DEPTH tokens (one prompt, untimed; its time is printed as
// pp), then N_GEN single-token decodes are timed, each producing its logits and a token, as
// `nuri bench --depth DEPTH -p 0 -n N_GEN` times them. KV_K, KV_V: f16 | q8_0 | q4_0 (llama.cpp's
// -ctk / -ctv); FA: fa for flash attention on, anything else off. Prints one JSON line:
//   {"depth": D, "kv": "q8_0/q8_0", "fa": true, "pp_tokens_per_s": ..., "tg_tokens_per_s": ...}
// Token ids are arbitrary, as in nuri bench. Never downloads or builds llama.cpp.
import {createRequire} from "node:module";
import path from "node:path";

const require = createRequire(path.resolve("tests/oracle/package.json"));
const {getLlama} = await import(require.resolve("node-llama-cpp"));

const [modelPath, depthArg, genArg, threadsArg, kvK, kvV, fa] = process.argv.slice(2);
const depth = Number(depthArg), nGen = Number(genArg), threads = Number(threadsArg);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath, gpuLayers: 0, useMmap: true});
const context = await model.createContext({
    contextSize: depth + nGen + 64,
    batchSize: 512,
    flashAttention: fa === "fa",
    threads,
    experimentalKvCacheKeyType: kvK.toUpperCase(),
    experimentalKvCacheValueType: kvV.toUpperCase(),
});
const seq = context.getSequence();
const now = () => Number(process.hrtime.bigint()) / 1e9;
const toks = [];
for (let i = 0; i < depth + nGen; i++) toks.push(1 + ((i * 7919) % 1000));
let t0 = now();
await seq.controlledEvaluate(toks.slice(0, depth).map((t, i) =>
    i === depth - 1 ? [t, {generateNext: {token: true}}] : t));
const pp = depth / (now() - t0);
t0 = now();
for (let i = 0; i < nGen; i++)
    await seq.controlledEvaluate([[toks[depth + i], {generateNext: {token: true}}]]);
const tg = nGen / (now() - t0);
console.log(JSON.stringify({depth, kv: `${kvK}/${kvV}`, fa: fa === "fa", n_threads: threads,
                            pp_tokens_per_s: +pp.toFixed(2), tg_tokens_per_s: +tg.toFixed(3)}));
await context.dispose();
await model.dispose();
