// Command image builds the operator's image without a Docker engine (`make image`): the static
// manager binary on a base made from scratch, written as an OCI layout and as a tarball, and
// pushed to a registry with --push (`make image-push`).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/mastodon-operator/mastodon-operator/internal/image"
)

func main() {
	o := image.Options{}
	var layoutDir, tarPath, ref, push string
	flag.StringVar(&o.Binary, "binary", "bin/manager", "The manager, built with CGO_ENABLED=0 GOOS=linux.")
	flag.StringVar(&o.CACertificates, "ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "The CA bundle to ship (Debian's ca-certificates).")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "The binary's GOARCH.")
	flag.StringVar(&o.Version, "version", "0.1.0", "org.opencontainers.image.version.")
	flag.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision (the git commit).")
	flag.StringVar(&o.Source, "source", "https://github.com/mastodon-operator/mastodon-operator", "org.opencontainers.image.source.")
	flag.StringVar(&ref, "ref", "ghcr.io/mastodon-operator/mastodon-operator:0.1.0", "The image's name and tag.")
	flag.StringVar(&layoutDir, "layout", "bin/image", "Where to write the OCI image layout.")
	flag.StringVar(&tarPath, "tarball", "bin/image.tar", "Where to write the tarball for `docker load`.")
	flag.StringVar(&push, "push", "", "Also push the image to this reference (REGISTRY/REPOSITORY:TAG), with the credentials of the Docker config ($DOCKER_CONFIG, ~/.docker/config.json and its credential helpers).")
	flag.Parse()
	// SOURCE_DATE_EPOCH (reproducible-builds.org) fixes the image's times; the default is the epoch.
	o.Created = time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fail(fmt.Errorf("SOURCE_DATE_EPOCH: %w", err))
		}
		o.Created = time.Unix(sec, 0).UTC()
	}
	img, err := image.Build(o)
	if err != nil {
		fail(err)
	}
	if err := image.WriteLayout(layoutDir, img, ref); err != nil {
		fail(err)
	}
	if err := image.WriteTarball(tarPath, img, ref); err != nil {
		fail(err)
	}
	digest, err := img.Digest()
	if err != nil {
		fail(err)
	}
	fmt.Printf("%s@%s\n  OCI layout: %s\n  tarball:    %s\n", ref, digest, layoutDir, tarPath)
	if push != "" {
		pushed, err := image.Push(context.Background(), img, push)
		if err != nil {
			fail(err)
		}
		fmt.Printf("  pushed:     %s\n", pushed)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "image:", err)
	os.Exit(1)
}
