package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// gitSteps are the step types that send settings.git.tokenRef to the
// portal's git remote (or GitHub's API).
var gitSteps = []string{"git.checkout", "git.commitPush", "git.merge", "git.headCommit"}

// SecretPolicy is the worker's secret policy: the rules of secrets.allow
// plus those the settings imply for references they name themselves,
// which the built-in runbooks pass to their steps:
//
//   - settings.git.tokenRef: the git steps, to the host of
//     settings.git.repository (when it is an http(s) URL) and, for provider
//     github, to GitHub (settings.git.apiURL's host, default
//     api.github.com, and github.com);
//   - settings.upgrade.registryPasswordRef: image.push, to the registry of
//     settings.upgrade.imageRepository;
//   - environments.<name>.smokeChecks[].tokenRef: web.smoke and web.get,
//     to the host of the environment's url;
//   - settings.notify.webhooks[].urlRef: notify.send (the value is the
//     webhook URL, its own destination).
//
// A database's passwordRef and a command's own env need no rule: the
// config chose the reference and where it goes, a run only names the
// database or command. So a config without secrets.allow refuses every
// other reference a run's steps name (exec.run env from the run, web
// tokenRef, any other passwordRef or tokenRef).
func (c *Config) SecretPolicy() (*secrets.Policy, error) {
	rules := append(c.impliedSecretRules(), c.Secrets.Allow...)
	return secrets.NewPolicy(rules)
}

func (c *Config) impliedSecretRules() []secrets.Rule {
	var rules []secrets.Rule
	str := func(m map[string]any, k string) string {
		s, _ := m[k].(string)
		return strings.TrimSpace(s)
	}
	sub := func(m map[string]any, k string) map[string]any {
		v, _ := m[k].(map[string]any)
		return v
	}
	if g := sub(c.Settings, "git"); g != nil {
		if ref := str(g, "tokenRef"); ref != "" {
			var hosts []string
			if u, err := url.Parse(str(g, "repository")); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
				hosts = append(hosts, impliedHost(u))
			}
			if str(g, "provider") == "github" {
				api := "api.github.com"
				if u, err := url.Parse(str(g, "apiURL")); err == nil && u.Host != "" {
					api = impliedHost(u)
				}
				hosts = append(hosts, api, "github.com")
			}
			rules = append(rules, secrets.Rule{Ref: ref, Steps: gitSteps, Hosts: hosts, Origin: "settings.git.tokenRef"})
		}
	}
	if up := sub(c.Settings, "upgrade"); up != nil {
		if ref := str(up, "registryPasswordRef"); ref != "" {
			var hosts []string
			if h := registryHost(str(up, "imageRepository")); h != "" {
				hosts = append(hosts, h)
			}
			rules = append(rules, secrets.Rule{Ref: ref, Steps: []string{"image.push"}, Hosts: hosts, Origin: "settings.upgrade.registryPasswordRef"})
		}
	}
	for _, name := range c.EnvironmentNames() {
		env := c.Environments[name]
		u, err := url.Parse(env.URL)
		if err != nil || u.Host == "" {
			continue
		}
		for i, check := range env.SmokeChecks {
			if ref := str(check, "tokenRef"); ref != "" {
				rules = append(rules, secrets.Rule{Ref: ref, Steps: []string{"web.smoke", "web.get"}, Hosts: []string{impliedHost(u)},
					Origin: fmt.Sprintf("environments.%s.smokeChecks[%d].tokenRef", name, i)})
			}
		}
	}
	if n := sub(c.Settings, "notify"); n != nil {
		hooks, _ := n["webhooks"].([]any)
		for i, h := range hooks {
			m, _ := h.(map[string]any)
			if ref := str(m, "urlRef"); ref != "" {
				rules = append(rules, secrets.Rule{Ref: ref, Steps: []string{"notify.send"}, Hosts: []string{"*"},
					Origin: fmt.Sprintf("settings.notify.webhooks[%d].urlRef", i)})
			}
		}
	}
	return rules
}

// registryHost is the registry of an image repository the way Docker
// reads it: the first path element when it looks like a host (has a dot
// or a port, or is localhost), else Docker Hub.
func registryHost(repo string) string {
	if repo == "" {
		return ""
	}
	first, _, ok := strings.Cut(repo, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return "docker.io"
}

// impliedHost is the rule host for a URL the config names: its host, or
// for http:// its host:port, since the policy allows plain http only to a
// rule that names the port (a bare host allows TLS only).
func impliedHost(u *url.URL) string {
	if u.Scheme == "http" {
		if h, err := secrets.URLHost(u.String()); err == nil {
			return h
		}
	}
	return u.Host
}
