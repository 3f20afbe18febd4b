// Batch assembly from uint8 CIFAR images (airbench94's CifarLoader): gather, normalise, translate, mirror.
//
// Constants (from lib/data/loader.ts):
//   N      images in the set
//   SPLIT  images held in img_lo (the rest are in img_hi: one binding cannot hold all 50,000)
//   BATCH  (gather only) images per training batch
//   PAD    (gather only) translation range t: shifts are -t..t, reflect padding
//   FLIP   (gather only) flip augmentation on: the whole set is mirrored on odd epochs
//
// Entry `gather` (training batch) binds 0..8 below; entry `view` (test batch / TTA view) binds
// 0 = `vw` and 1..6. The two binding-0 uniforms are never used by the same entry point.
//
// Every output pixel is one thread: it reads 3 bytes, looks them up in the normalisation table and writes
// one act4, so the result is an exact copy of host-computed values (bit-identical to the TS reference).

// #include "shared/grid.wgsl"
// #include "shared/step.wgsl"

const SIDE: u32 = 32u;
const PLANE: u32 = 1024u;     // 32*32 pixels per channel plane
const IMG_WORDS: u32 = 768u;  // 3*1024 bytes per image, packed 4 per u32
const LUT_SIZE: u32 = 256u;   // table entries per channel
const WG: u32 = 256u;

struct View {
  start: u32, // first image of this test batch
  count: u32, // images in this batch (the last one may be partial)
  flip: u32,  // 1: mirror the output left-right
  dy: i32,    // out[y][x] = img[reflect(y + dy)][reflect(x + dx)]
  dx: i32,
}

@group(0) @binding(0) var<uniform> st: Step;               // gather: epoch, batch_start
@group(0) @binding(0) var<uniform> vw: View;               // view (never bound together with st)
// Official layout [SPLIT][3][32][32] uint8, packed 4 per u32: byte 4w+k of an image is byte k (LE) of word w.
@group(0) @binding(1) var<storage, read> img_lo: array<u32>;
@group(0) @binding(2) var<storage, read> img_hi: array<u32>; // images SPLIT..N-1, same layout
@group(0) @binding(3) var<storage, read> lut: array<act>;    // [3][256]: (v/255 - mean[c]) / std[c]
@group(0) @binding(4) var<storage, read> labels: array<u32>; // [N]
@group(0) @binding(5) var<storage, read_write> x: array<act4>; // NHWC [B][32][32][4], channel 3 = 0
@group(0) @binding(6) var<storage, read_write> y: array<u32>;  // [B] labels of the batch
@group(0) @binding(7) var<storage, read> perm: array<u32>;   // [EPOCHS][N] concatenated epoch permutations
// [EPOCHS][N] by original image index: bits 0-7 dy + PAD, bits 8-15 dx + PAD, bit 16 the image's
// first-epoch flip (the same in every epoch).
@group(0) @binding(8) var<storage, read> aug: array<u32>;

fn image_byte(img: u32, off: u32) -> u32 {
  var w: u32;
  if (img < SPLIT) {
    w = img_lo[img * IMG_WORDS + off / 4u];
  } else {
    w = img_hi[(img - SPLIT) * IMG_WORDS + off / 4u];
  }
  return (w >> ((off & 3u) * 8u)) & 0xffu;
}

// Normalised pixel (row r, column c) of image img, channel 3 = 0.
fn pixel(img: u32, r: u32, c: u32) -> act4 {
  let p = r * SIDE + c;
  return act4(
    lut[image_byte(img, p)],
    lut[LUT_SIZE + image_byte(img, PLANE + p)],
    lut[2u * LUT_SIZE + image_byte(img, 2u * PLANE + p)],
    act(0.0),
  );
}

// PyTorch 'reflect' padding index (edge not repeated): -1 -> 1, 32 -> 30; valid for |shift| < 32.
fn mirror_index(i: i32) -> u32 {
  let a = abs(i);
  return u32(select(a, 62 - a, a > 31));
}

// Training batch: slot j holds image perm[batch_start + j], cropped from its reflect-padded (and, if drawn,
// first-epoch-mirrored) version at its shift for this epoch, then mirrored when FLIP and the epoch is odd.
@compute @workgroup_size(WG)
fn gather(ids: GridIds) {
  let t = grid_index(ids, WG);
  if (t >= BATCH * PLANE) {
    return;
  }
  let j = t / PLANE;
  let oy = (t % PLANE) / SIDE;
  let ox = t % SIDE;
  let img = perm[st.batch_start + j];
  let a = aug[st.epoch * N + img];
  let dy = i32(a & 0xffu) - i32(PAD);
  let dx = i32((a >> 8u) & 0xffu) - i32(PAD);
  let flip_once = ((a >> 16u) & 1u) == 1u;
  let flip_all = FLIP && (st.epoch & 1u) == 1u;
  let cx = select(ox, SIDE - 1u - ox, flip_all);   // the epoch mirror acts on the crop
  let sx = mirror_index(i32(cx) + dx);             // column in the (first-epoch-mirrored) image
  x[t] = pixel(img, mirror_index(i32(oy) + dy), select(sx, SIDE - 1u - sx, flip_once));
  if (t % PLANE == 0u) {
    y[j] = labels[img];
  }
}

// Test batch view: images start..start+count-1 in order, translated by (dy, dx) with reflect padding,
// then mirrored when flip is set. Writes only `count` images.
@compute @workgroup_size(WG)
fn view(ids: GridIds) {
  let t = grid_index(ids, WG);
  if (t >= vw.count * PLANE) {
    return;
  }
  let j = t / PLANE;
  let oy = (t % PLANE) / SIDE;
  let ox = t % SIDE;
  let img = vw.start + j;
  let cx = select(ox, SIDE - 1u - ox, vw.flip != 0u);
  x[t] = pixel(img, mirror_index(i32(oy) + vw.dy), mirror_index(i32(cx) + vw.dx));
  if (t % PLANE == 0u) {
    y[j] = labels[img];
  }
}
