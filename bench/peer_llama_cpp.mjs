// peer_llama_cpp.mjs: the llama.cpp side of bench/compare, timed the way llama-bench times it.
//
// Usage: node bench/peer_llama_cpp.mjs MODEL.gguf [-p 512] [-n 128] [-t THREADS] [-r REPS]
// Drives llama.cpp through the npm package node-llama-cpp (installed in tests/oracle/node_modules;
// run from the repository root, or set NODE_PATH). CPU only, flash attention off.
//   pp: one batch of -p tokens from an empty context, logits of the last token only.
//   tg: -n single-token decodes from an empty context, each producing its logits and a token.
// Prints one JSON line per test, like `nuri bench --json`:
//   {"test": "pp512", "n_threads": 2, "tokens_per_s": ..., "stddev": ..., "runs": [...]}
// and a first line {"peer": "llama.cpp", "backend": ...} naming what node-llama-cpp loaded (on this
// machine its prebuilt CPU binary is the sapphirerapids build, which uses AMX for prompt batches).
// Token ids are arbitrary, as in nuri bench. The script never downloads or builds llama.cpp.
import {createRequire} from "node:module";
import path from "node:path";

const require = createRequire(path.resolve("tests/oracle/package.json"));
const {getLlama} = await import(require.resolve("node-llama-cpp"));

const args = process.argv.slice(2);
let modelPath = null, nPrompt = 512, nGen = 128, threads = 1, reps = 3;
for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "-p") nPrompt = Number(args[++i]);
    else if (a === "-n") nGen = Number(args[++i]);
    else if (a === "-t") threads = Number(args[++i]);
    else if (a === "-r") reps = Number(args[++i]);
    else if (!modelPath) modelPath = a;
    else {
        console.error(`peer_llama_cpp: unknown argument '${a}'`);
        process.exit(2);
    }
}
if (!modelPath) {
    console.error("usage: node bench/peer_llama_cpp.mjs MODEL.gguf [-p N] [-n N] [-t T] [-r R]");
    process.exit(2);
}

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath, gpuLayers: 0, useMmap: true});
const nMax = Math.max(nPrompt, nGen, 1);
const context = await model.createContext({
    contextSize: Math.max(64, nMax + 16),
    batchSize: Math.max(64, nPrompt),
    flashAttention: false,
    threads,
});
const seq = context.getSequence();
const toks = [];
for (let i = 0; i < nMax; i++) toks.push(1 + ((i * 7919) % 1000));
const now = () => Number(process.hrtime.bigint()) / 1e9;

console.log(JSON.stringify({peer: "llama.cpp", via: "node-llama-cpp",
                            backend: llama.buildType ?? null, gpu: llama.gpu,
                            cpu_build: llama._bindingPath ?? null}));

// warm-up, like nuri bench and llama-bench: the whole prompt (or one token), untimed
await seq.controlledEvaluate(toks.slice(0, Math.max(nPrompt, 1)).map((t, i, a) =>
    i === a.length - 1 ? [t, {generateNext: {token: true}}] : t));
await seq.clearHistory();

const pp = [], tg = [];
for (let r = 0; r < reps; r++) {
    if (nPrompt > 0) {
        const input = toks.slice(0, nPrompt).map((t, i) =>
            i === nPrompt - 1 ? [t, {generateNext: {token: true}}] : t);
        const t0 = now();
        await seq.controlledEvaluate(input);
        pp.push(nPrompt / (now() - t0));
        await seq.clearHistory();
    }
    if (nGen > 0) {
        const t0 = now();
        for (let i = 0; i < nGen; i++)
            await seq.controlledEvaluate([[toks[i], {generateNext: {token: true}}]]);
        tg.push(nGen / (now() - t0));
        await seq.clearHistory();
    }
}

function stats(v) {
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const sd = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1)) : 0;
    return {mean, sd};
}
for (const [name, v] of [[`pp${nPrompt}`, pp], [`tg${nGen}`, tg]]) {
    if (!v.length) continue;
    const s = stats(v);
    console.log(JSON.stringify({test: name, n_threads: threads, tokens_per_s: +s.mean.toFixed(3),
                                stddev: +s.sd.toFixed(3), runs: v.map((x) => +x.toFixed(3))}));
}
await context.dispose();
await model.dispose();
