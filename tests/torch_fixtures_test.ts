// The committed PyTorch fixtures (tests/fixtures/*.safetensors, schedule.json) are what
// tests/torch_fixtures.py writes: `torch_fixtures.py --check` regenerates every one into a temporary folder
// and compares the bytes (a few seconds). It needs Debian's PyTorch (/usr/bin/python3 with python3-torch);
// without it the test is reported as ignored, with the reason in its name.

import assert from "node:assert/strict";

const PYTHON = "/usr/bin/python3";
const SCRIPT = new URL("./torch_fixtures.py", import.meta.url).pathname;

/** Why the check cannot run here, or null when it can. */
function torchMissing(): string | null {
  try {
    const r = new Deno.Command(PYTHON, { args: ["-c", "import torch"], stdout: "null", stderr: "null" })
      .outputSync();
    return r.success ? null : `${PYTHON} cannot import torch (apt-get install python3-torch)`;
  } catch {
    return `no ${PYTHON}`;
  }
}

const missing = torchMissing();

Deno.test({
  name: `torch_fixtures.py --check: every fixture regenerates byte-for-byte${
    missing ? ` (skipped: ${missing})` : ""
  }`,
  ignore: missing !== null,
  fn: async () => {
    const r = await new Deno.Command(PYTHON, { args: [SCRIPT, "--check"], stdout: "piped", stderr: "piped" })
      .output();
    const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    const different = out.split("\n").filter((l) => l.startsWith("DIFFERENT"));
    assert.deepEqual(different, [], out);
    assert.equal(r.code, 0, out);
    assert.match(out, /^(\d+) of \1 fixtures regenerate byte-for-byte/m, out);
  },
});
