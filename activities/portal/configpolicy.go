package portal

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// DefaultDeniedConfigKeys are app-config subtrees portal.setConfig refuses
// unless the worker's ConfigKeys allow them explicitly. A run's `set`
// comes from whoever can start runs; these keys would let that person
// turn off the backend's auth, point the database connection (and the
// password the server resolves) at another host, read secrets through
// integrations or proxies, or open CORS and CSP.
var DefaultDeniedConfigKeys = []string{"backend", "auth", "integrations", "proxy", "permission"}

// checkConfigPolicy refuses what no run may write into app-config, and
// (when allowed is set) anything outside it:
//   - a key path under a denied subtree (DefaultDeniedConfigKeys), unless
//     allowed names it or a subtree of it;
//   - any key part containing "dangerously" (Backstage's own marker for
//     settings that weaken security), at any depth of the value too;
//   - keys starting with "$" at any depth ($file, $env, $include read files
//     and the server's environment into config);
//   - string values with "${" (substitution from the server's environment,
//     where its secrets are).
func checkConfigPolicy(set map[string]any, allowed []string) error {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if len(allowed) > 0 && !underAny(k, allowed) {
			return invalidArgf("set: key %s is not one the worker allows runs to set (settings.plugin.configKeys: %s)", bounded(k, 200), strings.Join(allowed, ", "))
		}
		for _, d := range DefaultDeniedConfigKeys {
			if underAny(k, []string{d}) && !explicitlyAllowed(k, allowed) {
				return invalidArgf("set: key %s is under %s, which runs may not change (it governs the backend's security, database or credentials); a worker that wants it lists it in settings.plugin.configKeys", bounded(k, 200), d)
			}
		}
		for _, part := range strings.Split(k, ".") {
			if bad := badKey(part); bad != "" {
				return invalidArgf("set: key %s: %s", bounded(k, 200), bad)
			}
		}
		if err := checkValue(k, set[k]); err != nil {
			return err
		}
	}
	return nil
}

func badKey(part string) string {
	switch {
	case strings.HasPrefix(part, "$"):
		return fmt.Sprintf("%q: keys starting with $ ($file, $env, $include) read files or the server's environment into config", part)
	case strings.Contains(strings.ToLower(part), "dangerously"):
		return fmt.Sprintf("%q: a dangerously* setting weakens the portal's security; set it by hand", part)
	}
	return ""
}

func checkValue(k string, v any) error {
	switch x := v.(type) {
	case string:
		if strings.Contains(x, "${") {
			return invalidArgf("set %s: the value has ${...}, a substitution from the server's environment (where its secrets are); write the value itself", bounded(k, 200))
		}
	case map[string]any:
		for mk, mv := range x {
			if bad := badKey(mk); bad != "" {
				return invalidArgf("set %s: %s", bounded(k, 200), bad)
			}
			if err := checkValue(k+"."+mk, mv); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := checkValue(k, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// underAny reports whether dotted key k is one of prefixes or inside one.
func underAny(k string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return k == p || strings.HasPrefix(k, p+".") })
}

// explicitlyAllowed: allowed names k's subtree at least as deep as the
// denied one (allowing "backend" itself opens it all; "catalog" does not
// open "backend").
func explicitlyAllowed(k string, allowed []string) bool {
	return len(allowed) > 0 && underAny(k, allowed)
}
