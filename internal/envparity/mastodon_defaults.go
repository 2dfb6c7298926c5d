package envparity

// unset is what Mastodon does with a variable when it is not set: what tells a difference that
// changes nothing Mastodon does (Informational) from one that does.
type unset struct {
	// value is what Mastodon uses when the variable is unset; a value in aliases behaves the same.
	value   string
	aliases []string
	// sameAs: unset, the variable takes that variable's value, or that variable's default.
	sameAs string
	// unless: the default holds only when the old pods do not set this variable to this value.
	unless [2]string
	// flag: Mastodon reads it as ENV[...] == 'true', so any other value is off, as unset.
	flag bool
	// unread: no Mastodon process reads it, so any value behaves as unset.
	unread bool
	// railsOnly: the streaming server (a separate Node.js program) does not read it, so any
	// value behaves as unset there: streaming/index.js, database.js and logging.js read only
	// NODE_ENV, LOG_LEVEL, PORT, BIND, SOCKET, TRUSTED_PROXY_IP, DATABASE_URL, DB_* and REDIS_*.
	railsOnly bool
	// keeps is what the variable's value gives access to: dropping or changing it blocks.
	keeps string
	// source names where mastodon/mastodon (or its images) says so.
	source string
}

// mastodonUnset is the one table of Mastodon's own defaults, keyed by variable or, where the
// streaming server differs, by streaming/<variable>. A variable that is not here has no default
// on record: adding it is a change.
//
// Not here on purpose: MALLOC_ARENA_MAX, which the chart always sets to 2 (a glibc setting
// Mastodon's images do not set), and SMTP_OPENSSL_VERIFY_MODE, which Mastodon leaves unset
// (nil, config/email.yml) where the chart sets peer.
var mastodonUnset = map[string]unset{
	"SECRET_KEY_BASE": {railsOnly: true, keeps: "Rails signs sessions and cookies with it: users are signed out, and Rails does not boot without it",
		source: ".env.production.sample"},
	"OTP_SECRET": {railsOnly: true, keeps: "Mastodon decrypts older two-factor secrets with it: those users could not sign in",
		source: "config/initializers/legacy_otp_secret.rb"},
	"VAPID_PRIVATE_KEY": {railsOnly: true, keeps: "Web Push subscriptions are bound to the VAPID key pair: notifications stop",
		source: ".env.production.sample"},
	"VAPID_PUBLIC_KEY": {railsOnly: true, keeps: "Web Push subscriptions are bound to the VAPID key pair: notifications stop",
		source: ".env.production.sample"},
	"ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY": {railsOnly: true, keeps: "encrypted database columns are read with it: they become unreadable",
		source: "config/initializers/active_record_encryption.rb"},
	"ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY": {railsOnly: true, keeps: "encrypted database columns are read with it: they become unreadable",
		source: "config/initializers/active_record_encryption.rb"},
	"ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT": {railsOnly: true, keeps: "encrypted database columns are read with it: they become unreadable",
		source: "config/initializers/active_record_encryption.rb"},
	"AWS_ACCESS_KEY_ID":     {railsOnly: true, source: ".env.production.sample"},
	"AWS_SECRET_ACCESS_KEY": {railsOnly: true, source: ".env.production.sample"},
	"SMTP_LOGIN":            {railsOnly: true, source: "config/email.yml"},
	"SMTP_PASSWORD":         {railsOnly: true, source: "config/email.yml"},

	// The images' own environment.
	"RAILS_ENV":                {value: "production", source: "Dockerfile (ENV RAILS_ENV)"},
	"NODE_ENV":                 {value: "production", source: "Dockerfile, streaming/Dockerfile (ENV NODE_ENV)"},
	"BIND":                     {value: "0.0.0.0", source: "Dockerfile, streaming/Dockerfile (ENV BIND)"},
	"TZ":                       {value: "Etc/UTC", aliases: []string{"UTC"}, source: "Dockerfile, streaming/Dockerfile (TZ Etc/UTC)"},
	"RAILS_SERVE_STATIC_FILES": {value: "true", railsOnly: true, source: "Dockerfile (ENV RAILS_SERVE_STATIC_FILES)"},

	// Puma, the web server; Sidekiq and streaming do not start it.
	"PORT":               {value: "3000", source: "config/puma.rb"},
	"streaming/PORT":     {value: "4000", source: "streaming/index.js, streaming/Dockerfile (ENV PORT)"},
	"WEB_CONCURRENCY":    {value: "2", railsOnly: true, source: "config/puma.rb"},
	"MAX_THREADS":        {value: "5", railsOnly: true, source: "config/puma.rb, config/database.yml (pool)"},
	"MIN_THREADS":        {sameAs: "MAX_THREADS", railsOnly: true, source: "config/puma.rb"},
	"PERSISTENT_TIMEOUT": {value: "20", railsOnly: true, source: "config/puma.rb"},
	// The streaming server runs one process and reads it nowhere.
	"STREAMING_CLUSTER_NUM": {unread: true, source: "streaming/index.js"},

	"RAILS_LOG_LEVEL": {value: "info", railsOnly: true, source: "config/environments/production.rb"},
	"LOG_LEVEL":       {value: "info", source: "streaming/logging.js"},

	"DB_HOST":             {value: "localhost", source: "config/database.yml, streaming/database.js"},
	"DB_PORT":             {value: "5432", source: "config/database.yml, streaming/database.js"},
	"DB_NAME":             {value: "mastodon_production", source: "config/database.yml, streaming/database.js"},
	"DB_USER":             {value: "mastodon", source: "config/database.yml, streaming/database.js"},
	"PREPARED_STATEMENTS": {value: "true", railsOnly: true, source: "config/database.yml"},

	"ES_ENABLED": {flag: true, railsOnly: true, source: "config/initializers/chewy.rb"},
	"ES_HOST":    {value: "localhost", railsOnly: true, source: "config/initializers/chewy.rb"},
	"ES_PORT":    {value: "9200", railsOnly: true, source: "config/initializers/chewy.rb"},
	"ES_PRESET":  {value: "single_node_cluster", railsOnly: true, source: "app/lib/admin/system_check/elasticsearch_check.rb (es_preset)"},
	"ES_USER":    {railsOnly: true, source: "config/initializers/chewy.rb"},
	"ES_PASS":    {railsOnly: true, source: "config/initializers/chewy.rb"},

	"SINGLE_USER_MODE":     {flag: true, railsOnly: true, source: "config/initializers/single_user_mode.rb"},
	"CACHE_BUSTER_ENABLED": {flag: true, railsOnly: true, source: "config/cache_buster.yml"},
	"OMNIAUTH_ONLY":        {flag: true, railsOnly: true, source: "config/omniauth.yml"},
	"CAS_ENABLED":          {flag: true, railsOnly: true, source: "config/omniauth.yml"},
	"OIDC_ENABLED":         {flag: true, railsOnly: true, source: "config/omniauth.yml"},
	"SAML_ENABLED":         {flag: true, railsOnly: true, source: "config/omniauth.yml"},
	"PAM_ENABLED":          {flag: true, railsOnly: true, source: "config/initializers/devise.rb"},
	"LDAP_ENABLED":         {flag: true, railsOnly: true, source: "config/initializers/devise.rb"},

	"SMTP_DELIVERY_METHOD": {value: "smtp", railsOnly: true, source: "config/email.yml"},
	"SMTP_AUTH_METHOD":     {value: "plain", railsOnly: true, source: "config/email.yml"},
	"SMTP_CA_FILE":         {value: "/etc/ssl/certs/ca-certificates.crt", railsOnly: true, source: "config/email.yml"},
	"SMTP_FROM_ADDRESS":    {value: "notifications@localhost", railsOnly: true, source: "config/email.yml"},
	"SMTP_ENABLE_STARTTLS": {value: "auto", unless: [2]string{"SMTP_ENABLE_STARTTLS_AUTO", "false"}, railsOnly: true,
		source: "lib/mastodon/email_configuration_helper.rb"},
}
