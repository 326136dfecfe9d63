// Package cloud builds the Google Cloud clients once per instance from the
// configuration. The same code serves production and the local stack: with
// STORAGE_EMULATOR_HOST and TASKS_EMULATOR_HOST set, the very same official
// clients talk to the emulators instead.
package cloud

import (
	"context"
	"errors"
	"fmt"

	cloudtasks "cloud.google.com/go/cloudtasks/apiv2"
	"cloud.google.com/go/storage"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/ledgerstore"
	"github.com/assetgen/assetgen/shared/queue"
	"github.com/assetgen/assetgen/shared/urls"
)

// Clients are the long-lived clients of one instance.
type Clients struct {
	Storage *storage.Client
	Tasks   *cloudtasks.Client
	// Buckets is the storage adapter over any bucket (gs:// references).
	Buckets *bucket.Client
	// Bucket is the adapter over the platform's bucket, Ledger the batch
	// ledger kept in it.
	Bucket *bucket.Bucket
	Ledger *ledgerstore.Store
	Signer *urls.Signer
}

// Open builds the storage client, the storage adapter, the ledger store and
// the URL signer.
func Open(ctx context.Context, cfg config.Config) (*Clients, error) {
	// JSON reads work the same against the emulator and production (the
	// emulator's XML path needs a public host); they are harmless in the cloud.
	opts := []option.ClientOption{storage.WithJSONReads()}
	if cfg.StorageEmulatorHost != "" {
		// The endpoint option rather than the process environment, so several
		// stacks (tests) can live in one process.
		opts = append(opts, option.WithEndpoint("http://"+cfg.StorageEmulatorHost+"/storage/v1/"), option.WithoutAuthentication())
	}
	sc, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cloud: storage client: %w", err)
	}
	c := &Clients{Storage: sc, Buckets: bucket.NewClient(sc, bucket.DefaultPolicy())}
	c.Bucket = c.Buckets.Bucket(cfg.Bucket)
	c.Ledger = ledgerstore.New(c.Bucket)

	so := urls.Options{TTL: cfg.SignedURLTTL, GoogleAccessID: cfg.SigningAccount, Insecure: cfg.Local()}
	if cfg.SigningKeyFile != "" {
		key, err := urls.LoadOrCreateKey(cfg.SigningKeyFile)
		if err != nil {
			c.Close()
			return nil, err
		}
		so.PrivateKey = key
		if so.GoogleAccessID == "" {
			so.GoogleAccessID = urls.LocalAccessID
		}
	}
	if c.Signer, err = urls.New(sc.Bucket(cfg.Bucket), so); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// OpenTasks adds the Cloud Tasks client (only the functions that enqueue need it).
func (c *Clients) OpenTasks(ctx context.Context, cfg config.Config) error {
	var opts []option.ClientOption
	if cfg.TasksEmulatorHost != "" {
		opts = append(opts,
			option.WithEndpoint(cfg.TasksEmulatorHost),
			option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		)
	}
	tc, err := cloudtasks.NewClient(ctx, opts...)
	if err != nil {
		return fmt.Errorf("cloud: tasks client: %w", err)
	}
	c.Tasks = tc
	return nil
}

// Enqueuer returns the row-task enqueuer over the tasks client.
func (c *Clients) Enqueuer(cfg config.Config) *queue.Enqueuer {
	return queue.New(c.Tasks, queue.Config{
		Queue:            cfg.Queue,
		DryRunQueue:      cfg.DryRunQueue,
		TargetURL:        cfg.GenerateURL,
		ServiceAccount:   cfg.TasksServiceAccount,
		Audience:         cfg.TasksOIDCAudience,
		DispatchDeadline: cfg.DispatchDeadline,
	})
}

// Close releases the clients.
func (c *Clients) Close() error {
	var errs []error
	if c.Tasks != nil {
		errs = append(errs, c.Tasks.Close())
	}
	if c.Storage != nil {
		errs = append(errs, c.Storage.Close())
	}
	return errors.Join(errs...)
}
