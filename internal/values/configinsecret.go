package values

// configInSecret is the one list of variables whose value GenerateWithNotes reads out of a
// Secret: configuration that some installations keep in their Secret beside the credentials
// (a Secret made by Terraform holding the whole environment, say), but that is no credential,
// so that the chart, which takes it as a plain value, gets it in the values. Each entry says
// why the value is not a secret. A variable missing here is never read from a Secret: the
// values reference it (existingSecret, secretEnv) or a Note says it is not carried over.
//
// Credentials are not here, and neither is DB_USER: the chart reads it from a Secret only
// (postgresql.existingSecretKeys.username), and a login name is half of a credential.
var configInSecret = map[string]string{
	// The instance and its behaviour: all public.
	"LOCAL_DOMAIN":      "the instance's domain, in every account's address",
	"WEB_DOMAIN":        "the domain the web interface is served on, in every public URL",
	"ALTERNATE_DOMAINS": "other domains the instance answers on, public by DNS",
	"DEFAULT_LOCALE":    "the default language of the interface",
	"SINGLE_USER_MODE":  "a switch of the instance's public behaviour",
	"AUTHORIZED_FETCH":  "a switch of federation behaviour, visible to every remote server",
	"TRUSTED_PROXY_IP":  "address ranges of the load balancers, published by their provider",

	// Process settings.
	"RAILS_ENV":                "the Rails environment, production in every Mastodon image",
	"NODE_ENV":                 "the Node.js environment, production in every Mastodon image",
	"RAILS_LOG_LEVEL":          "a log level",
	"LOG_LEVEL":                "the streaming server's log level",
	"RAILS_SERVE_STATIC_FILES": "a switch for serving assets from Puma",
	"TZ":                       "a time zone",
	"PORT":                     "a listening port",
	"BIND":                     "a listening address",
	"WEB_CONCURRENCY":          "Puma's number of workers",
	"MAX_THREADS":              "Puma's number of threads",
	"MIN_THREADS":              "Puma's number of threads",
	"PERSISTENT_TIMEOUT":       "Puma's keep-alive timeout",
	"STREAMING_CLUSTER_NUM":    "the streaming server's number of workers",
	"DB_POOL":                  "the size of the database connection pool",
	"PREPARED_STATEMENTS":      "a switch of the database driver",

	// Where the backing services are: private addresses, which the credentials guard.
	"DB_HOST":            "the database server's address; the password guards it",
	"DB_PORT":            "the database server's port",
	"DB_NAME":            "the database's name",
	"REPLICA_DB_HOST":    "the read replica's address; its password guards it",
	"REPLICA_DB_PORT":    "the read replica's port",
	"REPLICA_DB_NAME":    "the read replica's database name",
	"REDIS_HOST":         "the Redis server's address; its password guards it",
	"REDIS_PORT":         "the Redis server's port",
	"SIDEKIQ_REDIS_HOST": "the address of Sidekiq's Redis; its password guards it",
	"SIDEKIQ_REDIS_PORT": "the port of Sidekiq's Redis",
	"CACHE_REDIS_HOST":   "the address of the cache's Redis; its password guards it",
	"CACHE_REDIS_PORT":   "the port of the cache's Redis",
	"ES_ENABLED":         "a switch for full-text search",
	"ES_HOST":            "the search server's address; its user and password guard it",
	"ES_PORT":            "the search server's port",
	"ES_PRESET":          "the shape of the search cluster",

	// Object storage: the bucket is public through its alias host; the access keys guard writes.
	"S3_ENABLED":             "a switch for object storage",
	"S3_PROTOCOL":            "the protocol of the object storage's URLs",
	"S3_BUCKET":              "the bucket's name, in every media URL without an alias host",
	"S3_ENDPOINT":            "the object storage's public API endpoint",
	"S3_HOSTNAME":            "the object storage's public host name",
	"S3_REGION":              "the bucket's region",
	"S3_PERMISSION":          "the ACL of uploaded files",
	"S3_ALIAS_HOST":          "the public host media are served from",
	"CDN_HOST":               "the public host assets are served from",
	"STREAMING_API_BASE_URL": "the public URL of the streaming API",

	// Mail: the relay's address and the sender are in every mail sent; the login and password
	// guard the relay.
	"SMTP_SERVER":               "the mail relay's address",
	"SMTP_PORT":                 "the mail relay's port",
	"SMTP_FROM_ADDRESS":         "the sender of every mail, shown to its recipients",
	"SMTP_DOMAIN":               "the HELO domain",
	"SMTP_AUTH_METHOD":          "how the relay authenticates, not with what",
	"SMTP_DELIVERY_METHOD":      "how mail leaves",
	"SMTP_ENABLE_STARTTLS":      "a TLS switch",
	"SMTP_ENABLE_STARTTLS_AUTO": "a TLS switch",
	"SMTP_OPENSSL_VERIFY_MODE":  "a TLS setting",
	"SMTP_TLS":                  "a TLS switch",
	"SMTP_CA_FILE":              "a path in the image",
	"SMTP_REPLY_TO":             "an address shown to every recipient",
	"SMTP_RETURN_PATH":          "an address shown to every recipient",

	// The CDN's cache buster: how it is called; its token is a credential and not here.
	"CACHE_BUSTER_ENABLED":       "a switch for purging the CDN",
	"CACHE_BUSTER_HTTP_METHOD":   "the HTTP method of a purge",
	"CACHE_BUSTER_SECRET_HEADER": "the name of the header that carries the token",

	// Services whose addresses are public; their keys are credentials and not here.
	"LIBRE_TRANSLATE_ENDPOINT": "the translation service's address",
	"DEEPL_PLAN":               "the translation plan, free or pro",
	"HCAPTCHA_SITE_KEY":        "hCaptcha's site key, sent to every browser",
}
