package completion

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	"google.golang.org/api/option"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/notify"
	"github.com/assetgen/assetgen/shared/refs"
	"github.com/assetgen/assetgen/shared/urls"
)

// NotifierFromConfig builds what announces finished batches: signed webhooks
// (keys from WEBHOOK_SIGNING_KEYS, or derived locally), Google Sheets
// write-back (in the cloud, or locally against SHEETS_API_URL), and stable
// image links (under PUBLIC_BASE_URL, signed by tokens).
func NotifierFromConfig(ctx context.Context, cfg config.Config, tokens *auth.Tokens) (Notifier, error) {
	n := Notifier{MaxElapsed: cfg.NotifyMaxElapsed}
	keys, err := WebhookKeysFromConfig(cfg)
	if err != nil {
		return n, err
	}
	n.Webhooks = notify.NewWebhooks(keys, refs.SafeClient(cfg.RefsAllowLoopback, 10*time.Second, 0), cfg.NotifyMaxElapsed)
	if SheetsAvailable(cfg) {
		var opts []option.ClientOption
		if cfg.SheetsAPIURL != "" {
			opts = append(opts, option.WithEndpoint(cfg.SheetsAPIURL), option.WithoutAuthentication())
		}
		s, err := notify.NewSheets(ctx, cfg.NotifyMaxElapsed, opts...)
		if err != nil {
			return n, fmt.Errorf("completion: sheets client: %w", err)
		}
		n.Sheets = s
	}
	if base := cfg.PublicBaseURL; base != "" {
		n.Link = func(m *ledger.Manifest, row, variant int) string {
			tok := tokens.MintAsset(m.BatchID, m.Owner, row, variant, cfg.HistoryRetention)
			return fmt.Sprintf("%s/assets/%s/%d/%d?token=%s", base, m.BatchID, row, variant, tok)
		}
	}
	return n, nil
}

// LocalWebhookKeyID names the key the local stack derives when
// WEBHOOK_SIGNING_KEYS is unset.
const LocalWebhookKeyID = "local"

// WebhookKeysFromConfig parses WEBHOOK_SIGNING_KEYS (Secret Manager in the
// cloud); unset on the local stack, one key is derived from the local signing
// key, so its signatures survive restarts without any configuration.
func WebhookKeysFromConfig(cfg config.Config) (*notify.SigningKeys, error) {
	spec := cfg.WebhookSigningKeys
	if spec == "" {
		if !cfg.Local() || cfg.SigningKeyFile == "" {
			return nil, fmt.Errorf("completion: WEBHOOK_SIGNING_KEYS is required (id:base64-seed,…)")
		}
		seed, err := urls.LocalSecret(cfg.SigningKeyFile, "webhooks") // 32 bytes: an Ed25519 seed
		if err != nil {
			return nil, err
		}
		spec = LocalWebhookKeyID + ":" + base64.StdEncoding.EncodeToString(seed)
	}
	keys, err := notify.ParseSigningKeys(spec)
	if err != nil {
		return nil, fmt.Errorf("completion: WEBHOOK_SIGNING_KEYS: %w", err)
	}
	return keys, nil
}

// SheetsAvailable reports whether Google Sheets write-back works here: in the
// cloud (as the function's service account), or locally against a stand-in.
func SheetsAvailable(cfg config.Config) bool { return !cfg.Local() || cfg.SheetsAPIURL != "" }
