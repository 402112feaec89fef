package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/istiod-lite/ca/client"
)

func newIssue() *cobra.Command {
	var (
		addr, rootFile, tokenFile, identity, serverID, trustDomain, keyOut string
		ttl, timeout                                                       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Request an SVID from istiod-lite's certificate service and print the chain as PEM",
		Example: `  # own identity of the token's service account, verify with openssl
  warrenctl x ca issue --addr 127.0.0.1:15012 --root-cert root.pem --token-file token > svid.pem
  openssl x509 -in svid.pem -noout -text

  # node-scoped impersonation, as ztunnel does for a pod on its node
  warrenctl x ca issue --addr 127.0.0.1:15012 --root-cert root.pem --token-file ztunnel-token \
    --identity spiffe://cluster.local/ns/shop/sa/web --key-out web-key.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			td, err := spiffeid.TrustDomainFromString(trustDomain)
			if err != nil {
				return fmt.Errorf("--trust-domain: %w", err)
			}
			rootPEM, err := os.ReadFile(rootFile)
			if err != nil {
				return fmt.Errorf("--root-cert: %w", err)
			}
			roots, err := certs.ParseCertificates(rootPEM)
			if err != nil {
				return fmt.Errorf("--root-cert %s: %w", rootFile, err)
			}
			sid, err := spiffeid.FromString(serverID)
			if err != nil {
				return fmt.Errorf("--server-id: %w", err)
			}
			var want spiffeid.ID
			if identity != "" {
				if want, err = spiffeid.FromString(identity); err != nil {
					return fmt.Errorf("--identity: %w", err)
				}
			}
			c, err := client.New(client.Options{Address: addr, Roots: certs.NewTrustBundle(td, roots...), ServerID: sid, Token: client.FileToken(tokenFile)})
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := c.Sign(ctx, want, ttl)
			if err != nil {
				return err
			}
			if keyOut != "" {
				keyPEM, err := certs.EncodeKey(res.SVID.PrivateKey)
				if err != nil {
					return err
				}
				if err := os.WriteFile(keyOut, keyPEM, 0o600); err != nil {
					return fmt.Errorf("--key-out: %w", err)
				}
			}
			_, err = cmd.OutOrStdout().Write(certs.EncodeCertificates(res.SVID.Certificates))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:15012", "certificate service address")
	f.StringVar(&rootFile, "root-cert", "", "trust bundle PEM (the warren-ca-root-cert ConfigMap's root-cert.pem)")
	f.StringVar(&tokenFile, "token-file", "", "file holding the bearer token (ServiceAccount or bootstrap token)")
	f.StringVar(&identity, "identity", "", "SPIFFE ID to request (default: the token's own identity)")
	f.StringVar(&trustDomain, "trust-domain", certs.DefaultTrustDomain, "trust domain of the roots")
	f.StringVar(&serverID, "server-id", "spiffe://cluster.local/ns/warren-system/sa/istiod-lite", "SPIFFE ID the service must present")
	f.StringVar(&keyOut, "key-out", "", "write the generated private key here (0600)")
	f.DurationVar(&ttl, "ttl", 0, "requested lifetime (0: the CA's default)")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "give up after this long")
	_ = cmd.MarkFlagRequired("root-cert")
	_ = cmd.MarkFlagRequired("token-file")
	return cmd
}
