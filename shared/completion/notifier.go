package completion

import (
	"context"
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
// (secret from WEBHOOK_SECRET, or derived locally), Google Sheets write-back
// (in the cloud, or locally against SHEETS_API_URL), and stable image links
// (under PUBLIC_BASE_URL, signed by tokens).
func NotifierFromConfig(ctx context.Context, cfg config.Config, tokens *auth.Tokens) (Notifier, error) {
	n := Notifier{MaxElapsed: cfg.NotifyMaxElapsed}
	secret := []byte(cfg.WebhookSecret)
	if len(secret) == 0 {
		if !cfg.Local() || cfg.SigningKeyFile == "" {
			return n, fmt.Errorf("completion: WEBHOOK_SECRET is required")
		}
		var err error
		if secret, err = urls.LocalSecret(cfg.SigningKeyFile, "webhooks"); err != nil {
			return n, err
		}
	}
	n.Webhooks = notify.NewWebhooks(secret, refs.SafeClient(cfg.RefsAllowLoopback, 10*time.Second, 0), cfg.NotifyMaxElapsed)
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

// SheetsAvailable reports whether Google Sheets write-back works here: in the
// cloud (as the function's service account), or locally against a stand-in.
func SheetsAvailable(cfg config.Config) bool { return !cfg.Local() || cfg.SheetsAPIURL != "" }
