#!/usr/bin/env bash
# `memfit quantize`: a small llama-shaped model (tests/helpers/quantize_sample)
# is quantized to every type; quantize_check reopens the output with the
# library, dequantizes, and prints each tensor's type and relative RMSE, which
# must be within docs/quantization.md's bounds. Also checks the types chosen
# (1-D kept F32, --keep, the q4_k_m mix, F16 fallback), GGUF metadata, the
# refusals (exit codes and messages) and that no temporary file is left after
# a failure. With torch, nf4_check.py dequantizes our NF4 as bitsandbytes does.
source "$(dirname "$0")/lib.bash"
cd "$TMP" || exit 1
"$BUILD/quantize_sample" in.gguf f16 || exit 1
"$BUILD/quantize_sample" in32.safetensors f32 || exit 1

# Bounds: docs/quantization.md's round-trip bounds (F16 input: exact F16 copy; ~2e-4 from F32).
within() { # check file: every tensor's rmse under the bound of its type
    awk 'BEGIN {
        split("f32 1e-9 f16 2.5e-4 bf16 1.9e-3 q8_0 6.0e-3 q4_0 9.5e-2 q4_k 7.9e-2 q6_k 1.95e-2 nf4 0.101", a, " ")
        for (i = 1; i < length(a); i += 2) lim[a[i]] = a[i + 1] }
        { if (!($2 in lim) || $3 + 0 > lim[$2] + 0) { print "over bound: " $0; bad = 1 } }
        END { exit bad }' "$1"
}
for t in f32 f16 bf16 q8_0 q4_0 q4_k q6_k q4_k_m; do
    check "quantize to $t" "$MEMFIT" quantize in.gguf "out_$t.gguf" --type "$t" --threads 2
    "$BUILD/quantize_check" in.gguf "out_$t.gguf" >"check_$t.txt"
    check "$t: rmse within bounds" within "check_$t.txt"
done
for t in f16 bf16 f32; do
    check "safetensors $t" "$MEMFIT" quantize in32.safetensors "st_$t.safetensors" --type "$t"
    "$BUILD/quantize_check" in32.safetensors "st_$t.safetensors" >"check_st_$t.txt"
    check "safetensors $t: rmse within bounds" within "check_st_$t.txt"
done
check "nf4" "$MEMFIT" quantize in32.safetensors nf4.safetensors --type nf4
check "nf4 double quant" "$MEMFIT" quantize in.gguf nf4dq.safetensors --type nf4 --double-quant
"$BUILD/quantize_check" in32.safetensors nf4.safetensors >check_nf4.txt
"$BUILD/quantize_check" in.gguf nf4dq.safetensors >check_nf4dq.txt
check "nf4: rmse within bounds" within check_nf4.txt
check "nf4 double quant: rmse within bounds" within check_nf4dq.txt
check "nf4: 2-D weights are nf4" grep -q '^blk.0.attn_q.weight nf4 ' check_nf4.txt
check "nf4: embeddings stay float" grep -q '^token_embd.weight f32 ' check_nf4.txt

# Types chosen.
check "1-D stays f32" grep -q '^blk.0.attn_norm.weight f32 ' check_q4_0.txt
check "odd rows fall back to f16" grep -q '^odd.weight f16 ' check_q4_0.txt
check "q4_k_m: layer 0 attn_v is q6_k" grep -q '^blk.0.attn_v.weight q6_k ' check_q4_k_m.txt
check "q4_k_m: layer 1 ffn_down is q4_k" grep -q '^blk.1.ffn_down.weight q4_k ' check_q4_k_m.txt
check "q4_k_m: layer 7 ffn_down is q6_k" grep -q '^blk.7.ffn_down.weight q6_k ' check_q4_k_m.txt
check "q4_k_m: output is q6_k" grep -q '^output.weight q6_k ' check_q4_k_m.txt
check "q4_k_m: attn_q is q4_k" grep -q '^blk.5.attn_q.weight q4_k ' check_q4_k_m.txt
check "--keep" "$MEMFIT" quantize in.gguf keep.gguf --type q8_0 --keep 'blk.1.*' --keep 'output*'
"$BUILD/quantize_check" in.gguf keep.gguf >check_keep.txt
check "--keep: matching tensors keep f16" grep -q '^blk.1.attn_q.weight f16 ' check_keep.txt
check "--keep: others quantized" grep -q '^blk.2.attn_q.weight q8_0 ' check_keep.txt
"$MEMFIT" inspect --json out_q4_k_m.gguf >inspect.json
check "file_type 15, metadata copied" "$PY" -c 'import json,sys; m=json.load(open(sys.argv[1]))["metadata"]
assert m["general.file_type"] == 15 and m["general.architecture"] == "llama", m' inspect.json
check "quantized input is requantized" "$MEMFIT" quantize out_q8_0.gguf re.gguf --type q4_0

# Refusals.
expect() { # description, expected exit code, message regex, command...
    local what=$1 code=$2 re=$3
    shift 3
    "$@" >out.txt 2>err.txt
    local rc=$?
    CHECKS=$((CHECKS + 1))
    if [[ $rc -eq $code ]] && grep -Eq "$re" err.txt; then echo "ok: $what"; else
        fail "$what (rc $rc)"
        cat err.txt
    fi
}
ln -s in.gguf link.gguf
ln in.gguf hard.gguf
expect "refuses its input" 1 'refusing to overwrite the input' "$MEMFIT" quantize in.gguf in.gguf --type q8_0 --force
expect "refuses its input via a symlink" 1 'overwrite the input' "$MEMFIT" quantize in.gguf link.gguf --type q8_0 --force
expect "refuses its input via a hard link" 1 'overwrite the input' "$MEMFIT" quantize hard.gguf in.gguf --type q8_0 --force
expect "refuses an existing OUT" 1 'exists: use --force' "$MEMFIT" quantize in.gguf out_q8_0.gguf --type q8_0
check "--force overwrites" "$MEMFIT" quantize in.gguf out_q8_0.gguf --type q8_0 --force
expect "nf4 to gguf" 2 'nf4 is written only to safetensors' "$MEMFIT" quantize in.gguf x.gguf --type nf4
expect "q4_0 to safetensors" 2 'needs a .gguf OUT' "$MEMFIT" quantize in.gguf x.safetensors --type q4_0
expect "unknown type" 2 "unknown --type 'q3_k'" "$MEMFIT" quantize in.gguf x.gguf --type q3_k
expect "missing --type" 2 'needs --type' "$MEMFIT" quantize in.gguf x.gguf
head -c 100000 in.gguf >trunc.gguf
mkdir ro && chmod 555 ro
expect "truncated input" 1 '.' "$MEMFIT" quantize trunc.gguf x.gguf --type q8_0
if [[ $(id -u) -ne 0 ]]; then
    expect "unwritable directory" 1 '.' "$MEMFIT" quantize in.gguf ro/x.gguf --type q8_0
fi
check "no partial or temporary file left" test -z "$(ls -A ro; ls x.gguf* x.safetensors* 2>/dev/null)"

# Progress without a terminal: plain lines (every MEMFIT_PROGRESS_INTERVAL) and a
# last one; --quiet prints none, and no summary either.
MEMFIT_PROGRESS_INTERVAL=1ms "$MEMFIT" quantize in.gguf prog.gguf --type q8_0 >/dev/null 2>prog.err
check "progress lines, then the last one" grep -qE \
    '^memfit quantize: prog\.gguf [0-9.]+ [KM]iB of [0-9.]+ MiB \(100 %\), [0-9.]+ [KMG]iB/s, ([0-9]+)/\1 tensors, done in [0-9.]+ s$' prog.err
check "no carriage return in a log" test "$(tr -cd '\r' <prog.err | wc -c)" -eq 0
"$MEMFIT" quantize in.gguf prog.gguf --type q8_0 --force >progs.out 2>/dev/null
check "without --quiet: the summary" grep -q "prog.gguf" progs.out
"$MEMFIT" quantize in.gguf progq.gguf --type q8_0 --quiet >progq.out 2>progq.err
check "--quiet: exit 0" test $? -eq 0
check "--quiet prints no progress" test ! -s progq.err
check "--quiet prints no summary" test ! -s progq.out
check "--quiet wrote the file" test -s progq.gguf
"$MEMFIT" quantize in.gguf progq.gguf --type q8_0 -q >progq.out 2>progq.err
check "-q: an error still goes to stderr (exit 1)" test $? -eq 1
check "-q: the error names the file" grep -q "progq.gguf" progq.err

if /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
    check "nf4 dequantized as bitsandbytes does" /usr/bin/python3 "$MEMFIT_SOURCE/tests/integration/nf4_check.py" in32.safetensors nf4.safetensors
    check "nf4 double quant, bitsandbytes' way" /usr/bin/python3 "$MEMFIT_SOURCE/tests/integration/nf4_check.py" in32.safetensors nf4dq.safetensors
else
    echo "note: torch/numpy not available; the NF4 Python check did not run"
fi
finish
