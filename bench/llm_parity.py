#!/usr/bin/python3
"""llm_parity.py: compares per-position next-token distributions of LLM runs
on the same tokens (Python standard library only), for bench/llm_parity.sh.

Inputs are memfit's bench/llm_logits output ("MFLOGITS": n_vocab, n_pos, then
F32 logits) or llama.cpp's llama-perplexity --kl-divergence-base file
("_logits_": n_ctx, n_vocab, n_chunk, the tokens, then per chunk the
log-probabilities of positions n_ctx/2 .. n_ctx-2 as a scale, a minimum and
uint16 steps). Both are turned into log-probabilities (logits minus their
log-sum-exp: the same comparison whatever constant a run adds to a
position's logits), and only positions both files hold are compared.

  llm_parity.py tokens LLAMA.kld OUT.bin     the evaluated tokens, as int32
  llm_parity.py compare REF RUN [RUN...]     one line of figures per RUN

The figures per RUN against REF: max |log-prob difference| over every
position and token, its mean per position, top-1 agreement (share of
positions whose most likely token is the same) and top-5 agreement (mean
overlap of the five most likely tokens).
"""
import array
import math
import struct
import sys


def read_run(path):
    """(first position, list of log-prob arrays) of one file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] == b"MFLOGITS":
        n_vocab, n_pos = struct.unpack_from("<II", data, 8)
        rows = []
        for p in range(n_pos):
            row = array.array("f")
            row.frombytes(data[16 + 4 * n_vocab * p:16 + 4 * n_vocab * (p + 1)])
            rows.append(log_softmax(row))
        return 0, rows
    if data[:8] == b"_logits_":
        n_ctx, n_vocab, n_chunk = struct.unpack_from("<IiI", data, 8)
        if n_chunk != 1:
            raise SystemExit("%s: %d chunks; llm_parity reads one" % (path, n_chunk))
        off = 20 + 4 * n_ctx * n_chunk
        nv = 2 * ((n_vocab + 1) // 2) + 4
        first = n_ctx // 2
        rows = []
        for _ in range(n_ctx - 1 - first):
            scale, minimum = struct.unpack_from("<ff", data, off)
            steps = array.array("H")
            steps.frombytes(data[off + 8:off + 8 + 2 * n_vocab])
            rows.append(array.array("d", (scale * s + minimum for s in steps)))
            off += 2 * nv
        return first, rows
    raise SystemExit("%s: neither MFLOGITS nor llama.cpp's _logits_ file" % path)


def log_softmax(row):
    mx = max(row)
    lse = mx + math.log(math.fsum(math.exp(v - mx) for v in row))
    return array.array("d", (v - lse for v in row))


def top(row, k):
    return sorted(range(len(row)), key=row.__getitem__, reverse=True)[:k]


def compare(ref, run):
    (r0, rrows), (q0, qrows) = ref, run
    lo, hi = max(r0, q0), min(r0 + len(rrows), q0 + len(qrows))
    if lo >= hi:
        raise SystemExit("llm_parity: the runs share no position")
    worst = mean = top1 = top5 = 0.0
    for p in range(lo, hi):
        a, b = rrows[p - r0], qrows[p - q0]
        # llama.cpp stores log-probs below max - 16 as its floor: compare above it only.
        floor = max(a) - 15.9
        d = max((abs(x - y) for x, y in zip(a, b) if x > floor), default=0.0)
        worst = max(worst, d)
        mean += d
        ta, tb = top(a, 5), top(b, 5)
        top1 += ta[0] == tb[0]
        top5 += len(set(ta) & set(tb)) / 5
    n = hi - lo
    return worst, mean / n, top1 / n, top5 / n, lo, hi


def main(argv):
    if len(argv) == 3 and argv[0] == "tokens":
        with open(argv[1], "rb") as f:
            data = f.read(20)
            if data[:8] != b"_logits_":
                raise SystemExit("%s: not a llama.cpp _logits_ file" % argv[1])
            n_ctx, _, n_chunk = struct.unpack_from("<IiI", data, 8)
            tokens = f.read(4 * n_ctx * n_chunk)
        with open(argv[2], "wb") as f:
            f.write(tokens)
        return 0
    if len(argv) >= 3 and argv[0] == "compare":
        ref = read_run(argv[1])
        for path in argv[2:]:
            w, m, t1, t5, lo, hi = compare(ref, read_run(path))
            print("%-40s max|dlogp| %.4f  mean max %.4f  top-1 %5.1f %%  top-5 %5.1f %%  "
                  "(positions %d-%d)" % (path, w, m, 100 * t1, 100 * t5, lo, hi - 1))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
