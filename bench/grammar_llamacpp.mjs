// grammar_llamacpp.mjs: the llama.cpp side of bench/grammar.sh: a generation loop with and
// without a GBNF grammar, through node-llama-cpp (tests/oracle/node_modules; run from the
// repository root). Run by bench/grammar.sh.
//
//   node bench/grammar_llamacpp.mjs MODEL.gguf (GRAMMAR.gbnf | none) N
//
// Generates N tokens at temperature 1 with top-k 40, one thread, restarting from the prompt when
// a generation ends. Asking for the chosen token's probability makes node-llama-cpp apply the
// grammar to the whole vocabulary before sampling (its forceGrammar path), as nuri does; without
// it, node-llama-cpp first samples unconstrained and applies the grammar only when that token is
// refused. Both are timed. Prints one line per mode, like grammar_gen.c.
import {createRequire} from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(path.resolve("tests/oracle/package.json"));
const {getLlama, LlamaGrammar, LlamaGrammarEvaluationState} =
    await import(require.resolve("node-llama-cpp"));

const [modelPath, grammarPath, nArg] = process.argv.slice(2);
const N = Number(nArg ?? 128);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath, gpuLayers: 0, useMmap: true});
const context = await model.createContext({contextSize: N + 64, batchSize: 64, flashAttention: false,
                                           threads: 1});
const seq = context.getSequence();
const grammar = grammarPath === "none" ? null
    : new LlamaGrammar(llama, {grammar: fs.readFileSync(grammarPath, "utf8")});
const prompt = model.tokens.bos ?? 0;
const now = () => Number(process.hrtime.bigint()) / 1e9;

async function run(forced) {
    let made = 0, runs = 0;
    const t0 = now();
    while (made < N) {
        runs++;
        await seq.clearHistory();
        const opts = {temperature: 1, topK: 40, topP: 1, seed: runs, yieldEogToken: true};
        if (grammar) opts.grammarEvaluationState = new LlamaGrammarEvaluationState({model, grammar});
        const it = forced ? seq.evaluateWithMetadata([prompt], {confidence: true}, opts)
                          : seq.evaluate([prompt], opts);
        for await (const out of it) {
            made++;
            const tok = forced ? out.token : out;
            if (made >= N || model.isEogToken(tok)) break;
        }
    }
    const dt = now() - t0;
    return {ms: dt / made * 1e3, made, runs};
}

for (const forced of grammar ? [true, false] : [true]) {
    const r = await run(forced);
    const label = grammar ? `${grammarPath}${forced ? "" : " (lazy)"}` : "none";
    console.log(`llama.cpp  ${label.padEnd(26)} ${r.ms.toFixed(3).padStart(7)} ms/token ` +
                `(${r.made} tokens, ${r.runs} runs)`);
}
process.exit(0);
