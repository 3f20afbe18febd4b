// General f32 matrix product: C = ALPHA * op(A) @ op(B)            (entry gemm)
//                              C = ALPHA * op(A) @ op(B) + BETA * D (entry gemm_add)
// op(A) is M x K, op(B) is K x N, C and D are M x N, all row-major f32 with no padding and no alignment
// assumption (any M, N, K >= 1). op(A) = A stored [M][K], or with TA its transpose (A stored [K][M]); op(B) =
// B stored [K][N], or with TB its transpose (B stored [N][K]).
//
// Register blocking: each invocation computes a TM x TN block of C, walking k upwards and updating all
// TM * TN accumulators with one fma per product, so every element has the same fixed summation order (no
// atomics, no split: the same inputs give the same bits). Blocks at the lower and right edges clamp their
// load indices into the matrix and skip the stores outside it, so the inner loop has no branches.
// Constants: M N K (u32), TA TB (bool), ALPHA BETA (f32; BETA unused by gemm), TM TN (block), WG.
// C must not alias A, B or D.
//
// gemm_v4 / gemm_v4_add: the same products (the same fma chain per element, so the same bits) with vec4 loads
// and stores, for M % TM == 0 and N % TN == 0 with TM and TN multiples of 4 (no edge handling; any K): the
// column of op(A) and the row of op(B) at each k are vec4 loads where contiguous, else element loads.

// #include "shared/grid.wgsl"

const RB: u32 = (M + TM - 1u) / TM; // row blocks
const CB: u32 = (N + TN - 1u) / TN; // column blocks

@group(0) @binding(0) var<storage, read> mat_a: array<f32>;
@group(0) @binding(1) var<storage, read> mat_b: array<f32>;
@group(0) @binding(2) var<storage, read_write> mat_c: array<f32>;
@group(0) @binding(3) var<storage, read> mat_d: array<f32>; // gemm_add only

// the vec4 entry points' views of the same bindings
@group(0) @binding(0) var<storage, read> vec_a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> vec_b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> vec_c: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> vec_d: array<vec4<f32>>; // gemm_v4_add only

fn load_a(i: u32, k: u32) -> f32 {
  if (TA) {
    return mat_a[k * M + i];
  }
  return mat_a[i * K + k];
}

fn load_b(k: u32, j: u32) -> f32 {
  if (TB) {
    return mat_b[j * K + k];
  }
  return mat_b[k * N + j];
}

// The TM x TN block (rb, cb) of op(A) @ op(B).
fn block_product(rb: u32, cb: u32) -> array<array<f32, TN>, TM> {
  var rows: array<u32, TM>;
  var cols: array<u32, TN>;
  for (var r = 0u; r < TM; r++) {
    rows[r] = min(rb * TM + r, M - 1u);
  }
  for (var t = 0u; t < TN; t++) {
    cols[t] = min(cb * TN + t, N - 1u);
  }
  var acc: array<array<f32, TN>, TM>;
  for (var k = 0u; k < K; k++) {
    var av: array<f32, TM>;
    var bv: array<f32, TN>;
    for (var r = 0u; r < TM; r++) {
      av[r] = load_a(rows[r], k);
    }
    for (var t = 0u; t < TN; t++) {
      bv[t] = load_b(k, cols[t]);
    }
    for (var r = 0u; r < TM; r++) {
      for (var t = 0u; t < TN; t++) {
        acc[r][t] = fma(av[r], bv[t], acc[r][t]);
      }
    }
  }
  return acc;
}

@compute @workgroup_size(WG)
fn gemm(ids: GridIds) {
  let tid = grid_index(ids, WG);
  if (tid >= RB * CB) {
    return;
  }
  let rb = tid / CB;
  let cb = tid % CB;
  let acc = block_product(rb, cb);
  for (var r = 0u; r < TM; r++) {
    let i = rb * TM + r;
    for (var t = 0u; t < TN; t++) {
      let j = cb * TN + t;
      if (i < M && j < N) {
        mat_c[i * N + j] = ALPHA * acc[r][t];
      }
    }
  }
}

@compute @workgroup_size(WG)
fn gemm_add(ids: GridIds) {
  let tid = grid_index(ids, WG);
  if (tid >= RB * CB) {
    return;
  }
  let rb = tid / CB;
  let cb = tid % CB;
  let acc = block_product(rb, cb);
  for (var r = 0u; r < TM; r++) {
    let i = rb * TM + r;
    for (var t = 0u; t < TN; t++) {
      let j = cb * TN + t;
      if (i < M && j < N) {
        mat_c[i * N + j] = ALPHA * acc[r][t] + BETA * mat_d[i * N + j];
      }
    }
  }
}

// ---- vec4 path
const M4: u32 = M / 4u;
const N4: u32 = N / 4u;
const TN4: u32 = max(TN / 4u, 1u); // (scalar-path pipelines may have TN < 4 or TM < 4)
const TM4: u32 = max(TM / 4u, 1u);
const CB4: u32 = N / TN; // column blocks of the vec4 path

// One element of a matrix stored as vec4s (row-major, `cols` % 4 == 0).
fn elem_a(row: u32, col: u32, cols: u32) -> f32 {
  let at = row * cols + col;
  return vec_a[at / 4u][at % 4u];
}

fn elem_b(row: u32, col: u32, cols: u32) -> f32 {
  let at = row * cols + col;
  return vec_b[at / 4u][at % 4u];
}

// The TM x TN block (rb, cb) of op(A) @ op(B); acc[r][t] holds columns cb * TN + 4t .. 4t + 3 of row r.
// Per k, the column of op(A) and the row of op(B) are vec4 loads where they are contiguous in memory (A
// stored [K][M], B stored [K][N]), else element loads.
fn block_product_v4(rb: u32, cb: u32) -> array<array<vec4<f32>, TN4>, TM> {
  var acc: array<array<vec4<f32>, TN4>, TM>;
  for (var k = 0u; k < K; k++) {
    var acol: array<vec4<f32>, TM4>; // acol[v][l] = op(A)[rb * TM + 4v + l][k]
    for (var v = 0u; v < TM4; v++) {
      if (TA) {
        acol[v] = vec_a[k * M4 + rb * TM4 + v];
      } else {
        let i = rb * TM + v * 4u;
        acol[v] = vec4<f32>(elem_a(i, k, K), elem_a(i + 1u, k, K), elem_a(i + 2u, k, K), elem_a(i + 3u, k, K));
      }
    }
    var brow: array<vec4<f32>, TN4>; // brow[t][l] = op(B)[k][cb * TN + 4t + l]
    for (var t = 0u; t < TN4; t++) {
      if (TB) {
        let j = cb * TN + t * 4u;
        brow[t] = vec4<f32>(elem_b(j, k, K), elem_b(j + 1u, k, K), elem_b(j + 2u, k, K), elem_b(j + 3u, k, K));
      } else {
        brow[t] = vec_b[k * N4 + cb * TN4 + t];
      }
    }
    for (var v = 0u; v < TM4; v++) {
      for (var l = 0u; l < 4u; l++) {
        for (var t = 0u; t < TN4; t++) {
          acc[v * 4u + l][t] = fma(vec4<f32>(acol[v][l]), brow[t], acc[v * 4u + l][t]);
        }
      }
    }
  }
  return acc;
}

@compute @workgroup_size(WG)
fn gemm_v4(ids: GridIds) {
  let tid = grid_index(ids, WG);
  if (tid >= (M / TM) * CB4) {
    return;
  }
  let rb = tid / CB4;
  let cb = tid % CB4;
  let acc = block_product_v4(rb, cb);
  for (var r = 0u; r < TM; r++) {
    for (var t = 0u; t < TN4; t++) {
      vec_c[(rb * TM + r) * N4 + cb * TN4 + t] = ALPHA * acc[r][t];
    }
  }
}

@compute @workgroup_size(WG)
fn gemm_v4_add(ids: GridIds) {
  let tid = grid_index(ids, WG);
  if (tid >= (M / TM) * CB4) {
    return;
  }
  let rb = tid / CB4;
  let cb = tid % CB4;
  let acc = block_product_v4(rb, cb);
  for (var r = 0u; r < TM; r++) {
    for (var t = 0u; t < TN4; t++) {
      let o = (rb * TM + r) * N4 + cb * TN4 + t;
      vec_c[o] = ALPHA * acc[r][t] + BETA * vec_d[o];
    }
  }
}
