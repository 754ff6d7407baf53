// compare.mjs: compares `nuri eval` output with llama_cpp_eval.mjs output for the same model and
// tokens. Usage: node compare.mjs NURI.jsonl LLAMA.jsonl CLASS   (CLASS: F32 | F16 | BF16 | quant)
// Prints one summary line and exits 1 if the tolerances (the golden data's recommended ones) fail:
//   F32 mean|d| <= 1e-3 max <= 1e-2; F16 1e-2 / 5e-2 (see below); BF16 1e-2 / 1e-1 (over llama.cpp's top-10);
//   quant: KL mean <= 5e-3, KL max <= 3e-2, top-1 agreement >= 30/32 of positions (scaled).
import {readFileSync} from "node:fs";

const [nuriPath, llamaPath, cls] = process.argv.slice(2);
const read = (p) => readFileSync(p, "utf8").trim().split("\n").map((l) => JSON.parse(l));
const nuri = read(nuriPath).filter((r) => "pos" in r);
const llama = read(llamaPath).filter((r) => "pos" in r);
if (nuri.length !== llama.length || nuri.length === 0) {
    console.log(`position count differs: nuri ${nuri.length}, llama.cpp ${llama.length}`);
    process.exit(1);
}
let sumAbs = 0, nAbs = 0, maxAbs = 0, klSum = 0, klMax = 0, top1 = 0, missing = 0, worst = 0;
for (let i = 0; i < nuri.length; i++) {
    const mine = new Map(nuri[i].top.map(([id, lp]) => [id, lp]));
    const floor = nuri[i].top[nuri[i].top.length - 1][1];
    let kl = 0;
    llama[i].top.forEach(([id, lp], j) => {
        let m = mine.get(id);
        if (m === undefined) { missing++; m = floor; } // outside nuri's list: at most its last
        kl += Math.exp(lp) * (lp - m);
        if (j < 10) {
            const d = Math.abs(lp - m);
            sumAbs += d; nAbs++;
            if (d > maxAbs) { maxAbs = d; worst = i; }
        }
    });
    klSum += kl; klMax = Math.max(klMax, kl);
    if (nuri[i].top[0][0] === llama[i].top[0][0]) top1++;
}
const n = nuri.length, mean = sumAbs / nAbs, klMean = klSum / n;
// Mixtures of experts: nuri reports each position's router margin (how near an expert choice came
// to changing, in router logits). A different choice from llama.cpp's is a large error, so the
// summary names the smallest margin and the margin at the worst position: a failure there with a
// tiny margin is an expert flip, one with a large margin is not.
let moe = "";
if ("router_margin" in nuri[0]) {
    let minM = Infinity, minAt = 0;
    nuri.forEach((r, i) => { if (r.router_margin < minM) { minM = r.router_margin; minAt = i; } });
    moe = `, router margin min ${minM.toExponential(2)} (pos ${minAt}), ` +
        `${nuri[worst].router_margin.toExponential(2)} at the worst pos ${worst}`;
}
console.log(`mean|d| ${mean.toExponential(2)} max|d| ${maxAbs.toExponential(2)} ` +
    `KL mean ${klMean.toExponential(2)} max ${klMax.toExponential(2)} top1 ${top1}/${n}${moe}`);
// F16 is looser than the goldens' 5e-3 / 3e-2: on a CPU with AMX (Sapphire Rapids and later)
// node-llama-cpp loads a backend that multiplies F16 weights with F32 activations, while the
// goldens' platform (and nuri) round the activations to F16 first. The two differ by up to 1e-2
// already at position 0 (measured); the golden tests hold nuri to the tight limit.
const lim = {F32: [1e-3, 1e-2], F16: [1e-2, 5e-2], BF16: [1e-2, 1e-1]}[cls];
let ok;
if (lim) ok = mean <= lim[0] && maxAbs <= lim[1];
else ok = klMean <= 5e-3 && klMax <= 3e-2 && top1 >= Math.floor(n * 30 / 32);
process.exit(ok ? 0 : 1);
