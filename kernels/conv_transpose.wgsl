// Weights for the input gradient: wt[ky][kx][co][ci] = w[KH-1-ky][KW-1-kx][ci][co], i.e. the kernel flipped
// in space with input and output channels swapped (HWIO of the transposed convolution). f32 in and out.
// Constants: CI CO KH KW WG (shape of w).

// #include "shared/grid.wgsl"

@group(0) @binding(0) var<storage, read> w: array<f32>;         // HWIO [KH][KW][CI][CO]
@group(0) @binding(1) var<storage, read_write> wt: array<f32>;  // HWIO [KH][KW][CO][CI]

@compute @workgroup_size(WG)
fn conv_transpose(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= KH * KW * CI * CO) {
    return;
  }
  let ci = i % CI;
  let co = (i / CI) % CO;
  let tap = i / (CI * CO);
  let ky = tap / KW;
  let kx = tap % KW;
  wt[i] = w[(((KH - 1u - ky) * KW + (KW - 1u - kx)) * CI + ci) * CO + co];
}
