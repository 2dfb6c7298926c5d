package values

// ChartKey names the chart value that gives the containers of component (web, streaming or
// sidekiq) the variable name, after the configuration mapping of GenerateWithNotes. For a
// variable the chart reads from a Secret it is the existingSecretKeys entry naming the key
// (fromSecret is true; the Secret is that group's existingSecret), whether or not the chart
// renders it; else the chart's setting, such as mastodon.localDomain or mastodon.web.maxThreads.
// It is "" when the chart has no setting of its own for it: mastodon.extraEnvVars (every
// component) or mastodon.<component>.extraEnvVars then give it as a plain value.
func ChartKey(name, component string) (key string, fromSecret bool) {
	for _, grp := range secretGroups {
		for _, sv := range grp.vars {
			if sv.env == name {
				return dotted(sub(grp.path, "existingSecretKeys", sv.field)), true
			}
		}
	}
	if key, ok := componentKeys[component+"/"+name]; ok {
		return key, false
	}
	if key, ok := chartOwnKeys[name]; ok {
		return key, false
	}
	if target, ok := plainVars[name]; ok && target.kind != asFixed {
		return dotted(target.path), false
	}
	return "", false
}

// componentKeys are the settings mapWeb and mapStreaming fill in, by component/variable; the
// other components get no such variable from the chart.
var componentKeys = map[string]string{
	"web/PORT":               "mastodon.web.port",
	"web/WEB_CONCURRENCY":    "mastodon.web.workers",
	"web/MAX_THREADS":        "mastodon.web.maxThreads",
	"web/MIN_THREADS":        "mastodon.web.minThreads",
	"web/PERSISTENT_TIMEOUT": "mastodon.web.persistentTimeout",
	"streaming/PORT":         "mastodon.streaming.port",
}

// chartOwnKeys are settings the chart writes into every component's environment that the
// mapping leaves at the chart's defaults.
var chartOwnKeys = map[string]string{
	"STREAMING_CLUSTER_NUM": "mastodon.streaming.workers",
	"TZ":                    "timezone",
	"RAILS_LOG_LEVEL":       "mastodon.logLevel.rails",
	"LOG_LEVEL":             "mastodon.logLevel.streaming",
	"PREPARED_STATEMENTS":   "postgresql.preparedStatements",
}
