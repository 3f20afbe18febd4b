// Plain float64 references for the convolution kernels (NHWC activations, HWIO weights, as the kernels).

import { type ConvShape, outSize } from "../nn/conv_base.ts";

type Arr = ArrayLike<number>;

/**
 * Every output pixel of a convolution in order, and for each the kernel taps that land inside the image:
 * `pixel(yo)` with the pixel's offset in y (NHWC), then `tap(yo, xo, wo)` with the input pixel's offset in x
 * (NHWC) and the tap's first weight (HWIO, input channel 0).
 */
function forEachTap(
  s: ConvShape,
  pixel: (yo: number) => void,
  tap: (yo: number, xo: number, wo: number) => void,
) {
  const { HO, WO } = outSize(s);
  for (let n = 0; n < s.N; n++) {
    for (let oy = 0; oy < HO; oy++) {
      for (let ox = 0; ox < WO; ox++) {
        const yo = ((n * HO + oy) * WO + ox) * s.CO;
        pixel(yo);
        for (let ky = 0; ky < s.KH; ky++) {
          const iy = oy + ky - s.PAD;
          if (iy < 0 || iy >= s.H) continue;
          for (let kx = 0; kx < s.KW; kx++) {
            const ix = ox + kx - s.PAD;
            if (ix < 0 || ix >= s.W) continue;
            tap(yo, ((n * s.H + iy) * s.W + ix) * s.CI, (ky * s.KW + kx) * s.CI * s.CO);
          }
        }
      }
    }
  }
}

export function convForwardRef(s: ConvShape, x: Arr, w: Arr, b: Arr): Float64Array {
  const { HO, WO } = outSize(s);
  const y = new Float64Array(s.N * HO * WO * s.CO);
  forEachTap(s, (yo) => {
    for (let co = 0; co < s.CO; co++) y[yo + co] = b[co];
  }, (yo, xo, w0) => {
    for (let ci = 0; ci < s.CI; ci++) {
      const xv = x[xo + ci];
      const wo = w0 + ci * s.CO;
      for (let co = 0; co < s.CO; co++) y[yo + co] += xv * w[wo + co];
    }
  });
  return y;
}

/** Gradients of sum(y * dy) for y = conv(x, w) + b: returns dx (NHWC), dw (HWIO), db. */
export function convBackwardRef(
  s: ConvShape,
  x: Arr,
  w: Arr,
  dy: Arr,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const dx = new Float64Array(s.N * s.H * s.W * s.CI);
  const dw = new Float64Array(s.KH * s.KW * s.CI * s.CO);
  const db = new Float64Array(s.CO);
  forEachTap(s, (yo) => {
    for (let co = 0; co < s.CO; co++) db[co] += dy[yo + co];
  }, (yo, xo, w0) => {
    for (let ci = 0; ci < s.CI; ci++) {
      const wo = w0 + ci * s.CO;
      let acc = 0;
      const xv = x[xo + ci];
      for (let co = 0; co < s.CO; co++) {
        acc += dy[yo + co] * w[wo + co];
        dw[wo + co] += xv * dy[yo + co];
      }
      dx[xo + ci] += acc;
    }
  });
  return { dx, dw, db };
}
