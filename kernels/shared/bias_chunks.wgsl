// The bias gradient's chunks (conv_bias_grad.wgsl, conv_bias_grad_sg.wgsl): db[co] = sum over the M output
// pixels of dy[p][co], the pixels split into KSPLIT fixed chunks whose partial sums go to part [KSPLIT][CO]
// f32. Layouts: dy NHWC flattened to [M][CO] act. Constants: M CO KSPLIT.

const CO4: u32 = CO / 4u;
const KCHUNK: u32 = (M + KSPLIT - 1u) / KSPLIT;

@group(0) @binding(0) var<storage, read> dy: array<act4>;
@group(0) @binding(1) var<storage, read_write> part: array<vec4<f32>>;

// Channels 4*c4.. summed over chunk s's pixels first, first + stride, ... in that order.
fn chunk_sum(s: u32, c4: u32, first: u32, stride: u32) -> vec4<f32> {
  var acc = vec4<f32>(0.0);
  let p1 = min(M, (s + 1u) * KCHUNK);
  for (var p = s * KCHUNK + first; p < p1; p += stride) {
    acc += vec4<f32>(dy[p * CO4 + c4]);
  }
  return acc;
}
