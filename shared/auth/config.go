package auth

import (
	"encoding/base64"
	"fmt"

	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/urls"
)

// TokensFromConfig builds the signer of progress tokens and image links: keys
// from PROGRESS_TOKEN_KEYS (Secret Manager in the cloud), or derived from the
// local signing key on the local stack.
func TokensFromConfig(cfg config.Config) (*Tokens, error) {
	spec := cfg.ProgressTokenKeys
	if spec == "" {
		if !cfg.Local() || cfg.SigningKeyFile == "" {
			return nil, fmt.Errorf("auth: PROGRESS_TOKEN_KEYS is required (id:base64-secret,…)")
		}
		secret, err := urls.LocalSecret(cfg.SigningKeyFile, "progress tokens")
		if err != nil {
			return nil, err
		}
		spec = "local:" + base64.StdEncoding.EncodeToString(secret)
	}
	return NewTokens(spec, cfg.ProgressTokenTTL)
}
