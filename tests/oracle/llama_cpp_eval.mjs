// llama_cpp_eval.mjs: the oracle side of nuri's comparisons with llama.cpp.
//
// Usage: node tests/oracle/llama_cpp_eval.mjs MODEL.gguf 1,2,3 [TOP] [GREEDY_N] [KV_K KV_V FA]
// Runs llama.cpp (through the npm package node-llama-cpp, CPU, flash attention off, 1 thread) on
// the token ids and prints, like `nuri eval`, one JSON line per position:
//   {"pos": i, "top": [[id, logprob], ...]}
// then, if GREEDY_N > 0, one line {"greedy": [ids...]} with llama.cpp's greedy continuation.
// KV_K, KV_V: the KV cache's types (f16 | q8_0 | q4_0: llama.cpp's -ctk / -ctv, default f16);
// FA: fa for flash attention on (llama.cpp quantizes V only with it), else off.
//
// node tests/oracle/llama_cpp_eval.mjs --serve: the same for many models in one process (loading
// node-llama-cpp takes a second or two of the few each model needs): each line on stdin is a JSON
// array [OUT, MODEL, TOKENS, TOP, GREEDY_N, KV_K, KV_V, FA] (the arguments above, output file
// first); the lines above go to OUT, then "done" (or "error: ...") is printed on stdout.
// node-llama-cpp is a test oracle only, never a dependency of nuri itself.
import {getLlama} from "node-llama-cpp";
import {writeFileSync} from "node:fs";
import {createInterface} from "node:readline";

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});

async function evaluate(modelPath, tokenArg, topArg, greedyArg, kvK, kvV, fa) {
    const tokens = String(tokenArg).split(",").map(Number);
    const top = Number(topArg ?? 40);
    const greedyN = Number(greedyArg ?? 0);
    const lines = [];
    const model = await llama.loadModel({modelPath, gpuLayers: 0});
    try {
        const context = await model.createContext({
            contextSize: Math.max(64, tokens.length + greedyN + 8),
            batchSize: Math.max(64, tokens.length),
            flashAttention: fa === "fa",
            threads: 1,
            experimentalKvCacheKeyType: (kvK || "f16").toUpperCase(),
            experimentalKvCacheValueType: (kvV || "f16").toUpperCase(),
        });
        try {
            const seq = context.getSequence();
            const input = tokens.map((t) => [t, {generateNext: {probabilities: true}}]);
            const out = await seq.controlledEvaluate(input);
            for (let i = 0; i < tokens.length; i++) {
                const probs = out[i].next.probabilities;
                const pairs = [];
                for (const [id, p] of probs) {
                    if (pairs.length >= top) break;
                    pairs.push([id, Math.log(p)]);
                }
                lines.push(JSON.stringify({pos: i, top: pairs}));
            }
            if (greedyN > 0) {
                // greedy[k] and gaps[k], the log-probability gap between the best and second-best
                const greedy = [], gaps = [];
                let probs = out[tokens.length - 1].next.probabilities;
                for (let k = 0; k < greedyN; k++) {
                    const it = probs.entries();
                    const [best, p1] = it.next().value;
                    const p2 = it.next().value?.[1] ?? 0;
                    greedy.push(best);
                    gaps.push(Math.log(p1) - Math.log(p2));
                    if (k + 1 === greedyN) break;
                    const r = await seq.controlledEvaluate([[best, {generateNext: {probabilities: true}}]]);
                    probs = r[0].next.probabilities;
                }
                lines.push(JSON.stringify({greedy, gaps}));
            }
        } finally {
            await context.dispose();
        }
    } finally {
        await model.dispose();
    }
    return lines.join("\n") + "\n";
}

if (process.argv[2] === "--serve") {
    for await (const line of createInterface({input: process.stdin})) {
        if (!line.trim()) continue;
        try {
            const [outPath, ...args] = JSON.parse(line);
            writeFileSync(outPath, await evaluate(...args));
            console.log("done");
        } catch (e) {
            console.log("error: " + String(e?.message ?? e).replace(/\n/g, " "));
        }
    }
} else {
    process.stdout.write(await evaluate(...process.argv.slice(2)));
}
