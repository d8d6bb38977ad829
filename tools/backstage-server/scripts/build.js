#!/usr/bin/env node
// A STAND-IN for `backstage-cli package build` (what `yarn build` runs in a
// real Backstage app), which needs the whole backstage-cli toolchain
// (esbuild, rollup, TypeScript; hundreds of MB). Stagehand's tests only need
// what that build produces for a new-backend-system index:
//
//   packages/backend/src/index.ts  ->  packages/backend/dist/index.js (CommonJS)
//
// It understands exactly the syntax a stock create-app backend index uses:
//
//   import { a, b as c } from 'x';   ->  const { a, b: c } = require('x');
//   import 'x';                       ->  require('x');
//   import('x')                       ->  Promise.resolve().then(() => require('x'))
//
// (the last is what backstage-cli's CommonJS output does with a dynamic
// import), plus plain JavaScript statements. Anything else — other import
// forms, export, type annotations, interfaces, generics, `as` casts, other
// files under src/ — fails the build loudly with file:line and exit status
// 1, so an edit the real build would treat differently is never silently
// mistranslated. Lines keep their numbers in the output, so a stack trace
// from dist/index.js points at the same line of src/index.ts.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const root = path.resolve(__dirname, '..');
const srcDir = path.join(root, 'packages', 'backend', 'src');
const srcFile = path.join(srcDir, 'index.ts');
const outDir = path.join(root, 'packages', 'backend', 'dist');
const outFile = path.join(outDir, 'index.js');
const rel = p => path.relative(root, p);

class BuildError extends Error {
  constructor(line, message) {
    super(message);
    this.line = line;
  }
}

// mask returns the source with comments blanked (newlines kept) and the
// contents of string literals replaced by '_', so that syntax can be found
// by position without matching inside strings or comments.
function mask(src) {
  const out = src.split('');
  let i = 0;
  const n = src.length;
  const lineAt = k => src.slice(0, k).split('\n').length;
  while (i < n) {
    const c = src[i];
    const d = src[i + 1];
    if (c === '/' && d === '/') {
      while (i < n && src[i] !== '\n') out[i++] = ' ';
    } else if (c === '/' && d === '*') {
      const start = i;
      const end = src.indexOf('*/', i + 2);
      if (end < 0) throw new BuildError(lineAt(start), 'unterminated /* comment');
      for (; i < end + 2; i++) if (src[i] !== '\n') out[i] = ' ';
    } else if (c === "'" || c === '"' || c === '`') {
      if (c === '`') {
        throw new BuildError(lineAt(i), 'template literals are not supported by this stand-in build');
      }
      const start = i++;
      while (i < n && src[i] !== c) {
        if (src[i] === '\n') throw new BuildError(lineAt(start), 'unterminated string literal');
        if (src[i] === '\\') out[i++] = '_';
        out[i++] = '_';
      }
      if (i >= n) throw new BuildError(lineAt(start), 'unterminated string literal');
      i++;
    } else {
      i++;
    }
  }
  return out.join('');
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function compile(src) {
  const m = mask(src);
  const lineAt = k => src.slice(0, k).split('\n').length;
  const edits = []; // [start, end, replacement]

  for (const re of [/\bexport\b/g, /\binterface\b/g, /\bsatisfies\b/g, /\benum\b/g, /\bdeclare\b/g, /\bnamespace\b/g]) {
    const hit = re.exec(m);
    if (hit) {
      throw new BuildError(lineAt(hit.index), `unsupported TypeScript/ESM syntax "${hit[0]}" (this stand-in build handles a stock backend index only)`);
    }
  }
  const angle = /[<>]/.exec(m.replace(/=>/g, '  '));
  if (angle) {
    throw new BuildError(lineAt(angle.index), `unsupported syntax "${angle[0]}" (generics and comparisons are not handled by this stand-in build)`);
  }

  const importRE = /\bimport\b/g;
  let hit;
  while ((hit = importRE.exec(m))) {
    const at = hit.index;
    const after = m.slice(at + 6);
    const dyn = /^\s*\(/.exec(after);
    if (dyn) {
      // import('x') with a single string literal argument.
      const open = at + 6 + dyn[0].length - 1;
      const inner = /^\(\s*(['"])_*\1\s*\)/.exec(m.slice(open));
      if (!inner) {
        throw new BuildError(lineAt(at), 'dynamic import() must have one string literal argument');
      }
      const close = open + inner[0].length;
      const spec = src.slice(open + 1, close - 1).trim();
      edits.push([at, close, `Promise.resolve().then(() => require(${spec}))`]);
      importRE.lastIndex = close;
      continue;
    }
    // A static import must start a statement.
    const before = m.slice(0, at).replace(/\s+$/, '');
    if (before !== '' && !/[;}]$/.test(before)) {
      throw new BuildError(lineAt(at), 'import must start a statement');
    }
    const semi = m.indexOf(';', at);
    if (semi < 0) throw new BuildError(lineAt(at), 'import statement without a terminating ";"');
    const stmt = src.slice(at, semi + 1);
    const newlines = (stmt.match(/\n/g) || []).length;
    let out;
    let g;
    if ((g = /^import\s*\{([^}]*)\}\s*from\s*(['"][^'"\n]+['"])\s*;$/.exec(stmt))) {
      const names = g[1].split(',').map(s => s.trim()).filter(Boolean).map(s => {
        const parts = s.split(/\s+/);
        if (parts.length === 1 && IDENT.test(parts[0]) && parts[0] !== 'type') return parts[0];
        if (parts.length === 3 && parts[1] === 'as' && IDENT.test(parts[0]) && IDENT.test(parts[2])) {
          return `${parts[0]}: ${parts[2]}`;
        }
        throw new BuildError(lineAt(at), `unsupported import specifier "${s}"`);
      });
      if (names.length === 0) throw new BuildError(lineAt(at), 'empty import list');
      out = `const { ${names.join(', ')} } = require(${g[2]});`;
    } else if ((g = /^import\s*(['"][^'"\n]+['"])\s*;$/.exec(stmt))) {
      out = `require(${g[1]});`;
    } else {
      throw new BuildError(lineAt(at), `unsupported import form (only "import { a, b } from 'x';", "import 'x';" and import('x')): ${stmt.split('\n')[0]}`);
    }
    // Keep every later line on its line number.
    edits.push([at, semi + 1, out + '\n'.repeat(newlines)]);
    importRE.lastIndex = semi + 1;
  }

  let js = src;
  for (const [start, end, text] of edits.sort((a, b) => b[0] - a[0])) {
    js = js.slice(0, start) + text + js.slice(end);
  }
  // On the first line, so line numbers stay those of the source.
  js = `'use strict';` + js;

  // Whatever TypeScript is left (type annotations, `as` casts, `!`) is a
  // syntax error for JavaScript: let V8 find it, with the line.
  try {
    new vm.Script(js, { filename: 'index.ts' });
  } catch (err) {
    const where = /index\.ts:(\d+)/.exec(String(err.stack));
    throw new BuildError(where ? Number(where[1]) : 0, `not JavaScript after translation (TypeScript this stand-in build does not handle?): ${err.message}`);
  }
  return js;
}

function main() {
  const others = fs.readdirSync(srcDir).filter(f => f !== 'index.ts');
  if (others.length > 0) {
    console.error(`${rel(srcDir)}: ${others.join(', ')}: this stand-in build compiles src/index.ts only`);
    process.exit(1);
  }
  const src = fs.readFileSync(srcFile, 'utf8');
  let js;
  try {
    js = compile(src);
  } catch (err) {
    if (err instanceof BuildError) {
      console.error(`${rel(srcFile)}:${err.line}: ${err.message}`);
      console.error('build failed (scripts/build.js, the stand-in for backstage-cli package build)');
      process.exit(1);
    }
    throw err;
  }
  fs.mkdirSync(outDir, { recursive: true });
  const tmp = outFile + '.tmp';
  fs.writeFileSync(tmp, js);
  fs.renameSync(tmp, outFile);
  console.log(`built ${rel(outFile)} from ${rel(srcFile)}`);
}

main();
