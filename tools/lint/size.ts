// A `deno lint` plugin (deno.json "lint.plugins"): no function over 80 lines and no class body over 200
// lines, so a room that grows past what one screen explains is flagged where it grows. Lines are counted from
// the first to the last line of the node, both included.
const MAX_FUNCTION_LINES = 80;
const MAX_CLASS_LINES = 200;

type Ranged = Deno.lint.Node & { range: [number, number] };

function lineCount(text: string, [start, end]: [number, number]): number {
  let n = 1;
  for (let i = start; i < end; i++) if (text.charCodeAt(i) === 10) n++;
  return n;
}

const plugin: Deno.lint.Plugin = {
  name: "size",
  rules: {
    "max-lines": {
      create(ctx) {
        const text = ctx.sourceCode.text;
        const check = (what: string, max: number, fix: string) => (node: Ranged) => {
          const n = lineCount(text, node.range);
          if (n > max) {
            ctx.report({
              node,
              message: `${what} of ${n} lines (at most ${max}): ${fix}`,
            });
          }
        };
        const fn = check("function", MAX_FUNCTION_LINES, "split it into named steps");
        return {
          FunctionDeclaration: fn,
          FunctionExpression: fn,
          ArrowFunctionExpression: fn,
          ClassBody: check("class", MAX_CLASS_LINES, "split it by responsibility"),
        };
      },
    },
  },
};

export default plugin;
