// peer_llama_cpp.mjs: the llama.cpp side of bench/compare, timed the way llama-bench times it.
//
// Usage: node bench/peer_llama_cpp.mjs MODEL.gguf [-p 512] [-n 128] [-t THREADS] [-r REPS]
//                                   [--peer-cpu NAME]
// Drives llama.cpp through the npm package node-llama-cpp (installed in tests/oracle/node_modules;
// run from the repository root, or set NODE_PATH). CPU only, flash attention off.
//   pp: one batch of -p tokens from an empty context, logits of the last token only.
//   tg: -n single-token decodes from an empty context, each producing its logits and a token.
// Prints one JSON line per test, like `nuri bench --json`:
//   {"test": "pp512", "n_threads": 2, "tokens_per_s": ..., "stddev": ..., "runs": [...]}
// and a first line {"peer": "llama.cpp", "backend": ...} naming what node-llama-cpp loaded (on this
// machine its prebuilt CPU binary is the sapphirerapids build, which uses AMX for prompt batches).
// Token ids are arbitrary, as in nuri bench. The script never downloads or builds llama.cpp.
//
// --peer-cpu NAME (e.g. haswell: llama.cpp's AVX2 + FMA + F16C build) makes llama.cpp use the CPU
// variant libggml-cpu-NAME.so instead of the best one for this CPU, without touching node_modules:
// node-llama-cpp loads ggml's backends from the directory of its prebuilt binaries' package
// (@node-llama-cpp/linux-x64), where ggml picks the best-scoring libggml-cpu-*.so; the script copies
// that package into a temporary directory with that one variant and points module resolution
// (a node:module resolve hook) at the copy. The first line then names every
// libggml-cpu-*.so the process mapped (/proc/self/maps), and it is an error if that is not the
// requested one alone.
import {createRequire, register} from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {pathToFileURL} from "node:url";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const require = createRequire(path.join(root, "tests/oracle/package.json"));

const args = process.argv.slice(2);
let modelPath = null, nPrompt = 512, nGen = 128, threads = 1, reps = 3, peerCpu = null;
for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--peer-cpu") peerCpu = args[++i];
    else if (a === "-p") nPrompt = Number(args[++i]);
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
    console.error("usage: node bench/peer_llama_cpp.mjs MODEL.gguf [-p N] [-n N] [-t T] [-r R] [--peer-cpu NAME]");
    process.exit(2);
}

modelPath = path.resolve(modelPath);
if (peerCpu !== null) {
    if (!/^[a-z0-9_]+$/.test(peerCpu)) {
        console.error(`peer_llama_cpp: --peer-cpu must be a variant name like haswell (got '${peerCpu}')`);
        process.exit(2);
    }
    // the prebuilt binaries' package, as node-llama-cpp itself finds it
    const entry = require.resolve("@node-llama-cpp/linux-x64",
                                  {paths: [path.dirname(require.resolve("node-llama-cpp"))]});
    const pkgDir = path.dirname(path.dirname(entry));
    const bins = path.join(pkgDir, "bins", "linux-x64");
    const variants = fs.readdirSync(bins).filter((f) => /^libggml-cpu-.*\.so$/.test(f));
    if (!variants.includes(`libggml-cpu-${peerCpu}.so`)) {
        console.error(`peer_llama_cpp: no CPU variant '${peerCpu}' in ${bins} (there are: ${
            variants.map((f) => f.slice(12, -3)).join(", ")})`);
        process.exit(2);
    }
    // a copy of the package holding that variant alone, found first by module resolution
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "nuri-peer-cpu-"));
    process.on("exit", () => fs.rmSync(tmp, {recursive: true, force: true}));
    for (const d of ["dist", "bins/linux-x64"]) fs.mkdirSync(path.join(tmp, d), {recursive: true});
    fs.copyFileSync(path.join(pkgDir, "package.json"), path.join(tmp, "package.json"));
    for (const f of fs.readdirSync(path.join(pkgDir, "dist")))
        fs.copyFileSync(path.join(pkgDir, "dist", f), path.join(tmp, "dist", f));
    for (const f of fs.readdirSync(bins))
        if (!variants.includes(f) || f === `libggml-cpu-${peerCpu}.so`)
            fs.copyFileSync(path.join(bins, f), path.join(tmp, "bins/linux-x64", f));
    const target = pathToFileURL(path.join(tmp, "dist", path.basename(entry))).href;
    const hook = `export async function resolve(spec, ctx, next) {
        if (spec === "@node-llama-cpp/linux-x64") return {url: ${JSON.stringify(target)}, shortCircuit: true};
        return next(spec, ctx);
    }`;
    register("data:text/javascript," + encodeURIComponent(hook));
}
const {getLlama} = await import(require.resolve("node-llama-cpp"));

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

// the CPU variants this process actually mapped
const mapped = [...new Set(fs.readFileSync("/proc/self/maps", "utf8").split("\n")
                               .map((l) => l.slice(l.indexOf("/")))
                               .filter((f) => /\/libggml-cpu-[^/]*\.so$/.test(f)))];
console.log(JSON.stringify({peer: "llama.cpp", via: "node-llama-cpp",
                            backend: llama.buildType ?? null, gpu: llama.gpu,
                            cpu_build: llama._bindingPath ?? null, cpu_variant_mapped: mapped}));
if (peerCpu !== null &&
    (mapped.length !== 1 || path.basename(mapped[0]) !== `libggml-cpu-${peerCpu}.so`)) {
    console.error(`peer_llama_cpp: asked for libggml-cpu-${peerCpu}.so but the process mapped: ${mapped.join(", ") || "none"}`);
    process.exit(1);
}

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
