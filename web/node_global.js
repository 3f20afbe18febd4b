// Node's `global` for a page: @pkgjs/parseargs (imported by web/node_shim.js after this module, which
// therefore runs first) reads the built-ins from `global`, which a browser calls `globalThis`.
globalThis.global ??= globalThis;
