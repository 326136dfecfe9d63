package main

import (
	"context"
	"testing"
	"time"

	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/devstack"
)

// BenchmarkHundredRows is scripts/test-100-rows.sh in process: 10 batches of
// 10 rows × 3 variants, followed over SSE to done, every image fetched. Besides
// the wall time it reports Cloud Storage operations per generated image, counted
// between the storage client and the emulator.
func BenchmarkHundredRows(b *testing.B) {
	for _, bc := range []struct {
		name  string
		setup func(*devstack.Faults)
	}{
		{"plain", func(*devstack.Faults) {}},
		{"gcs-latency-50ms+write-limit", func(f *devstack.Faults) {
			f.SetLatency(50 * time.Millisecond)
			f.SetWriteLimit(time.Second)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			faults := devstack.NewFaults(1)
			// Production poll settings, so progress reads are counted as deployed.
			a := startApp(b, map[string]string{"LOG_LEVEL": "error", "SSE_POLL_MIN": "250ms", "SSE_POLL_MAX": "2s"}, faults)
			bc.setup(faults)
			c := client.New(a.base)
			plan := client.Plan{Batches: 10, Rows: 10, Variants: 3}
			faults.Reset()
			var images int64
			for b.Loop() {
				rep, err := c.Exercise(context.Background(), plan)
				if err != nil {
					b.Fatal(err)
				}
				images += rep.Verified
			}
			n := faults.Counts()
			b.ReportMetric(float64(n.Writes)/float64(images), "writes/image")
			b.ReportMetric(float64(n.ClassA())/float64(images), "classA/image")
			b.ReportMetric(float64(n.Reads)/float64(images), "reads/image")
			b.ReportMetric(float64(n.Status429)/float64(images), "429s/image")
		})
	}
}
