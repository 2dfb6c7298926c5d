package localcluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"

	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// pkiDir, under Dir, holds the cluster's keys and certificates.
const pkiDir = "pki"

// Files under Dir/pki. One CA signs both the apiserver's serving certificate
// and the admin's client certificate, and is the cluster signer of the
// controller-manager; sa.key signs and verifies ServiceAccount tokens.
const (
	caCertFile        = "ca.crt"
	caKeyFile         = "ca.key"
	servingCertFile   = "apiserver.crt"
	servingKeyFile    = "apiserver.key"
	adminCertFile     = "admin.crt"
	adminKeyFile      = "admin.key"
	serviceAccountKey = "sa.key"
)

// adminGroup makes the kubeconfig's user a cluster admin, whatever RBAC holds.
const adminGroup = "system:masters"

// ensurePKI writes the cluster's keys and certificates to dir unless an
// earlier start already did, so a restarted cluster keeps its identity.
func ensurePKI(dir string) error {
	// The admin pair is written last: if it is there, everything is.
	if ok, _ := cert.CanReadCertAndKey(filepath.Join(dir, adminCertFile), filepath.Join(dir, adminKeyFile)); ok {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ca, err := cert.NewSelfSignedCACert(cert.Config{CommonName: "mastodon-operator-local-ca"}, caKey)
	if err != nil {
		return err
	}
	if err := writePair(dir, caCertFile, caKeyFile, ca, caKey); err != nil {
		return err
	}
	saKey, err := keyutil.MakeEllipticPrivateKeyPEM()
	if err != nil {
		return err
	}
	if err := keyutil.WriteKey(filepath.Join(dir, serviceAccountKey), saKey); err != nil {
		return err
	}
	serving := cert.Config{
		CommonName: "kube-apiserver",
		AltNames: cert.AltNames{
			DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			IPs:      []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(kubernetesServiceIP), net.ParseIP(advertiseAddress)},
		},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if err := issue(dir, servingCertFile, servingKeyFile, serving, ca, caKey); err != nil {
		return err
	}
	admin := cert.Config{
		CommonName:   "mastodon-operator-admin",
		Organization: []string{adminGroup},
		Usages:       []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return issue(dir, adminCertFile, adminKeyFile, admin, ca, caKey)
}

// issue writes a new key and a certificate for it, as cfg describes, signed by ca.
func issue(dir, certFile, keyFile string, cfg cert.Config, ca *x509.Certificate, caKey crypto.Signer) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cfg.CommonName, Organization: cfg.Organization},
		DNSNames:     cfg.AltNames.DNSNames,
		IPAddresses:  cfg.AltNames.IPs,
		NotBefore:    ca.NotBefore,
		NotAfter:     ca.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  cfg.Usages,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, key.Public(), caKey)
	if err != nil {
		return fmt.Errorf("signing %s: %w", certFile, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	return writePair(dir, certFile, keyFile, leaf, key)
}

func writePair(dir, certFile, keyFile string, c *x509.Certificate, key crypto.PrivateKey) error {
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	if err := keyutil.WriteKey(filepath.Join(dir, keyFile), keyPEM); err != nil {
		return err
	}
	certPEM, err := cert.EncodeCertificates(c)
	if err != nil {
		return err
	}
	return cert.WriteCert(filepath.Join(dir, certFile), certPEM)
}
