# Sourced by the DINOv2 benchmarks: makes (once) the random ViT-B/14 weight
# files they share in $dir — vitb.pth (F32, scripts/make_dinov2_reference.py)
# and vitb-{f32,f16,q8_0,q4_0}.gguf (bench_vit --convert) — in /tmp, never in
# the repository. Needs $here (the source tree), $build and $py set.
dir=${TMPDIR:-/tmp}/memfit_dinov2_bench
mkdir -p "$dir"
if [ ! -f "$dir/vitb.pth" ]; then
    echo "making a random ViT-B/14 in $dir/vitb.pth"
    "$py" "$here/scripts/make_dinov2_reference.py" --vitb "$dir/vitb.pth"
fi
for t in f32 f16 q8_0 q4_0; do
    [ -f "$dir/vitb-$t.gguf" ] || "$build/bench/bench_vit" --convert "$dir/vitb.pth" "$dir/vitb-$t.gguf" "$t"
done
