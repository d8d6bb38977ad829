// Stagehand TEST FAULT, not a real plugin. It gives the end-to-end tests an
// upgrade whose new version migrates the database and then fails to start,
// deterministically, so the upgrade runbook's rollback (restore packages,
// restore the database behind its gate) can be tested for real.
//
// It does nothing unless the portal's backstage.json names one of
// FAULTY_RELEASES (written there by the version bump, as
// `backstage-cli versions:bump` writes the release it moved to). Then, in
// a root start-up hook (these run after every plugin finished its init,
// so the catalog has applied its Knex migrations), it prints the line a
// failed Backstage start-up prints and exits the process with status 1.
// The hook is synchronous: the process ends in the same tick the health
// service turns ready, so no readiness probe can see 200 first.
//
// A module of the catalog plugin rather than a plugin of its own, so it adds
// no backstage_plugin_<id> database that the migration checks would see.
// Plain CommonJS on purpose: a workspace package needing no build step.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { createBackendModule, coreServices } = require('@backstage/backend-plugin-api');

// Releases whose start-up this fixture breaks (internal/serverlab's
// FailRelease).
const FAULTY_RELEASES = ['1.45.1'];

function portalRelease() {
  // src/ -> catalog-backend-module-release-fault/ -> plugins/ -> the portal root.
  const file = path.resolve(__dirname, '..', '..', '..', 'backstage.json');
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')).version || '';
  } catch (err) {
    return '';
  }
}

// The shape a compiled `export default createBackendPlugin(...)` has, which
// is what backend.add(import(...)) unwraps.
exports.default = createBackendModule({
  pluginId: 'catalog',
  moduleId: 'release-fault',
  register(env) {
    env.registerInit({
      deps: {
        rootLifecycle: coreServices.rootLifecycle,
        logger: coreServices.logger,
      },
      async init({ rootLifecycle, logger }) {
        const release = portalRelease();
        if (!FAULTY_RELEASES.includes(release)) {
          return;
        }
        logger.warn(`release ${release} is a Stagehand test fault release: the backend will exit after start-up`);
        rootLifecycle.addStartupHook(() => {
          const msg = `Backend failed to start up: Stagehand test fault: release ${release} (plugins/catalog-backend-module-release-fault) exits after plugins initialised`;
          logger.error(msg);
          process.stderr.write(msg + '\n');
          process.exit(1);
        });
      },
    });
  },
});
