package helm

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Client-side rate limits for Helm's clients when the operator's config sets none. client-go's
// own defaults (5 QPS, burst 10) pace an install of a few dozen objects and its readiness
// polls; helm-controller defaults to more still.
const (
	defaultQPS   = 50
	defaultBurst = 100
)

// Clients are what every Helm configuration of the process shares: the operator's *rest.Config
// (instead of a kubeconfig file), one in-memory discovery cache and one REST mapper. Discovery
// is the same in every namespace; building it per configuration repeated its requests and kept
// a copy of the API's groups per release (as helm-controller's MemoryRESTClientGetter from
// fluxcd/pkg/runtime/client does, but shared).
type Clients struct {
	config    *rest.Config
	discovery discovery.CachedDiscoveryInterface
	mapper    meta.RESTMapper
}

// restClientGetter is the genericclioptions.RESTClientGetter Helm's kube client and the action
// configuration need, for one namespace.
type restClientGetter struct {
	*Clients
	namespace string
}

var _ genericclioptions.RESTClientGetter = (*restClientGetter)(nil)

// NewClients makes the clients of cfg.
func NewClients(cfg *rest.Config) (*Clients, error) {
	config := rest.CopyConfig(cfg)
	if config.QPS == 0 {
		config.QPS = defaultQPS
	}
	if config.Burst == 0 {
		config.Burst = defaultBurst
	}
	client, err := discovery.NewDiscoveryClientForConfig(config)
	if err != nil {
		return nil, err
	}
	cached := memory.NewMemCacheClient(client)
	// The deferred mapper resets the cache and retries when it meets a kind it does not know,
	// so kinds whose CRDs appear later are found.
	mapper := restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(cached), cached, nil)
	return &Clients{config: config, discovery: cached, mapper: mapper}, nil
}

func (g *restClientGetter) ToRESTConfig() (*rest.Config, error) {
	return rest.CopyConfig(g.config), nil
}

func (g *restClientGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.discovery, nil
}

func (g *restClientGetter) ToRESTMapper() (meta.RESTMapper, error) { return g.mapper, nil }

// ToRawKubeConfigLoader serves the one thing Helm asks of it, the namespace; there is no
// kubeconfig behind it.
func (g *restClientGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	return clientConfig{g}
}

type clientConfig struct{ g *restClientGetter }

func (c clientConfig) RawConfig() (clientcmdapi.Config, error) { return *clientcmdapi.NewConfig(), nil }

func (c clientConfig) ClientConfig() (*rest.Config, error) { return c.g.ToRESTConfig() }

func (c clientConfig) Namespace() (string, bool, error) { return c.g.namespace, true, nil }

func (c clientConfig) ConfigAccess() clientcmd.ConfigAccess {
	return clientcmd.NewDefaultClientConfigLoadingRules()
}
