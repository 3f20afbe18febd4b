// The few node: built-ins the library imports, for a browser page (web/index.html maps node:path, node:url,
// node:crypto and node:util here with an import map). The bundle keeps `node:` imports external; in a page
// only these run: path helpers on "/" paths, SHA-256 (CIFAR-10 batch verification), and a strict parseArgs
// (the experiment's own command-line parser turns the page's configuration into hyperparameters).
// Anything that needs a file system (Deno.*) is never reached from the page.

// ---- node:path (POSIX)
export function basename(p, ext) {
  const b = String(p).replace(/\/+$/, "").split("/").pop() ?? "";
  return ext && b.endsWith(ext) ? b.slice(0, -ext.length) : b;
}
export function dirname(p) {
  const s = String(p).replace(/\/+$/, "");
  const i = s.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : s.slice(0, i);
}
function normalize(p) {
  const abs = p.startsWith("/");
  const out = [];
  for (const part of p.split("/")) {
    if (!part || part === ".") continue;
    if (part === "..") {
      if (out.length && out[out.length - 1] !== "..") out.pop();
      else if (!abs) out.push("..");
    } else out.push(part);
  }
  return (abs ? "/" : "") + out.join("/") || (abs ? "/" : ".");
}
export function join(...parts) {
  return normalize(parts.filter((p) => p !== "").join("/"));
}
export function resolve(...parts) {
  let p = "";
  for (const part of parts) p = part.startsWith("/") ? part : `${p}/${part}`;
  return normalize(p.startsWith("/") ? p : `/${p}`);
}
export function relative(from, to) {
  const a = resolve(from).split("/").filter(Boolean), b = resolve(to).split("/").filter(Boolean);
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return [...a.slice(i).map(() => ".."), ...b.slice(i)].join("/");
}

// ---- node:url
export function fileURLToPath(u) {
  const url = typeof u === "string" ? new URL(u) : u;
  if (url.protocol !== "file:") throw new TypeError(`not a file: URL: ${url.href}`);
  return decodeURIComponent(url.pathname);
}
export function pathToFileURL(p) {
  return new URL(`file://${resolve(p)}`);
}

// ---- node:crypto: createHash("sha256") only
const K = new Uint32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);

class Sha256 {
  constructor() {
    this.h = new Uint32Array([
      0x6a09e667,
      0xbb67ae85,
      0x3c6ef372,
      0xa54ff53a,
      0x510e527f,
      0x9b05688c,
      0x1f83d9ab,
      0x5be0cd19,
    ]);
    this.w = new Uint32Array(64);
    this.buf = new Uint8Array(64);
    this.fill = 0;
    this.len = 0;
  }
  block(b, o) {
    const w = this.w, h = this.h;
    for (let i = 0; i < 16; i++) {
      w[i] = (b[o + 4 * i] << 24) | (b[o + 4 * i + 1] << 16) | (b[o + 4 * i + 2] << 8) | b[o + 4 * i + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15], y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = bb;
      bb = a;
      a = (t1 + t2) | 0;
    }
    h[0] += a;
    h[1] += bb;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  }
  update(data) {
    const b = typeof data === "string" ? new TextEncoder().encode(data) : data;
    this.len += b.length;
    let i = 0;
    if (this.fill) {
      const take = Math.min(64 - this.fill, b.length);
      this.buf.set(b.subarray(0, take), this.fill);
      this.fill += take;
      i = take;
      if (this.fill < 64) return this;
      this.block(this.buf, 0);
      this.fill = 0;
    }
    for (; i + 64 <= b.length; i += 64) this.block(b, i);
    this.buf.set(b.subarray(i), 0);
    this.fill = b.length - i;
    return this;
  }
  digest(enc) {
    const bits = this.len * 8;
    const pad = new Uint8Array(((this.fill < 56 ? 56 : 120) - this.fill) + 8);
    pad[0] = 0x80;
    const dv = new DataView(pad.buffer);
    dv.setUint32(pad.length - 8, Math.floor(bits / 2 ** 32));
    dv.setUint32(pad.length - 4, bits >>> 0);
    this.update(pad);
    const out = new Uint8Array(32);
    const odv = new DataView(out.buffer);
    this.h.forEach((v, i) => odv.setUint32(4 * i, v));
    if (enc === "hex") return Array.from(out, (x) => x.toString(16).padStart(2, "0")).join("");
    return out;
  }
}

export function createHash(alg) {
  if (String(alg).toLowerCase() !== "sha256") throw new Error(`createHash(${alg}): only sha256 in a browser`);
  return new Sha256();
}

// ---- node:util: parseArgs with string and boolean options, strict, no positionals unless allowed
export function parseArgs({ args = [], options = {}, allowPositionals = false, strict = true } = {}) {
  const values = {}, positionals = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) {
      if (!allowPositionals && strict) throw new TypeError(`Unexpected argument '${a}'`);
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
    const opt = options[name];
    if (!opt) {
      if (strict) throw new TypeError(`Unknown option '--${name}'`);
      values[name] = eq < 0 ? true : a.slice(eq + 1);
      continue;
    }
    if (opt.type === "boolean") {
      if (eq >= 0) throw new TypeError(`Option '--${name}' does not take an argument`);
      values[name] = true;
    } else if (eq >= 0) values[name] = a.slice(eq + 1);
    else {
      if (i + 1 >= args.length || args[i + 1].startsWith("--")) {
        throw new TypeError(`Option '--${name} <value>' argument missing`);
      }
      values[name] = args[++i];
    }
  }
  return { values, positionals };
}
