// A minimal, real Backstage backend for Stagehand's tests and local demo:
// the catalog and the auth backend with the guest sign-in provider, on
// PostgreSQL. Configuration comes from the app-config files named with
// --config (written by internal/backstagetest from app-config.template.yaml).
//
// CommonJS on purpose: it runs straight under `node` with no build step.
//
// STAGEHAND_BACKSTAGE_WITHOUT=catalog leaves the catalog plugin out, so the
// backend is ready but /api/catalog/* answers 404: the shape of a portal
// whose plugin failed to load, used by failing-smoke tests.
//
// STAGEHAND_BACKSTAGE_CATALOG=v4 loads catalog-backend 4.0.0 (installed under
// the alias @backstage/plugin-catalog-backend-v4) instead of 3.9.1: started on
// a database 3.9.1 created, it applies two more Knex migrations in a new
// batch, a real plugin upgrade for the database steps' tests.
//
// STAGEHAND_BACKSTAGE_CATALOG=<npm version> (what a portal image's
// package.json asks for, passed by internal/portalsim) names a version that
// is not installed here: the backend exits 1 at once, before it opens the
// database, as a portal image built without that package would.
'use strict';

const catalogChoice = process.env.STAGEHAND_BACKSTAGE_CATALOG || '';
if (/^[0-9]/.test(catalogChoice)) {
  console.error(
    `Error: Cannot find module @backstage/plugin-catalog-backend@${catalogChoice} (not installed; this backend has 3.9.1 and 4.0.0)`,
  );
  process.exit(1);
}

const Module = require('node:module');

// The catalog finds its Knex migrations with
// resolvePackagePath('@backstage/plugin-catalog-backend', 'migrations'),
// that is by package name, which would be 3.9.1's directory even when 4.0.0
// runs. With v4 selected, every resolution of that name (code, package.json,
// migrations) goes to the alias instead, so 4.0.0 runs with its own files.
if (process.env.STAGEHAND_BACKSTAGE_CATALOG === 'v4') {
  const name = '@backstage/plugin-catalog-backend';
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    if (request === name || request.startsWith(name + '/')) {
      request = name + '-v4' + request.slice(name.length);
    }
    return resolve.call(this, request, ...rest);
  };
}

const { createBackend } = require('@backstage/backend-defaults');

const without = new Set(
  (process.env.STAGEHAND_BACKSTAGE_WITHOUT || '').split(',').filter(Boolean),
);

const backend = createBackend();
const catalogs = {
  '': '@backstage/plugin-catalog-backend',
  v3: '@backstage/plugin-catalog-backend',
  v4: '@backstage/plugin-catalog-backend-v4',
};
const catalog = catalogs[process.env.STAGEHAND_BACKSTAGE_CATALOG || ''];
if (!catalog) {
  console.error(
    `unknown STAGEHAND_BACKSTAGE_CATALOG=${process.env.STAGEHAND_BACKSTAGE_CATALOG}: want v3 or v4`,
  );
  process.exit(2);
}
if (!without.has('catalog')) {
  backend.add(require(catalog));
}
if (!without.has('auth')) {
  backend.add(require('@backstage/plugin-auth-backend'));
  backend.add(require('@backstage/plugin-auth-backend-module-guest-provider'));
}
if (process.env.STAGEHAND_BACKSTAGE_STOCK_START === '1') {
  // As a stock packages/backend/src/index.ts does it (internal/portalsim,
  // which plays real portal pods): no handler of our own, so a plugin that
  // fails start-up does whatever Backstage itself then does with the process.
  backend.start();
} else {
  backend.start().catch(err => {
    // Exit non-zero so whoever supervises the process (the test harness, a
    // process manager) sees the failed start at once instead of a hung port.
    console.error('backend start failed:', err);
    process.exit(1);
  });
}
