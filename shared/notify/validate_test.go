package notify

import (
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestCheckWebhookURL(t *testing.T) {
	tests := []struct {
		url      string
		loopback bool
		ok       bool
	}{
		{"https://hooks.example.com/assetgen", false, true},
		{"https://hooks.example.com:8443/a?b=c", false, true},
		{"https://93.184.215.14/hook", false, true},
		{"https://[2606:4700::1111]/hook", false, true},
		{"https://Hooks.Example.COM./x", false, true},
		{"http://hooks.example.com/x", false, false}, // plain http
		{"http://hooks.example.com/x", true, false},  // plain http to a public host, even locally
		{"http://127.0.0.1:8080/hook", true, true},   // local runs and tests
		{"http://localhost:8080/hook", true, true},
		{"http://[::1]:8080/hook", true, true},
		{"https://127.0.0.1:8443/hook", true, true},
		{"http://127.0.0.1:8080/hook", false, false}, // not in the cloud
		{"https://127.0.0.1/hook", false, false},
		{"https://localhost/hook", false, false},
		{"https://app.localhost/hook", false, false},
		{"https://[::1]/hook", false, false},
		{"https://10.0.0.1/hook", false, false}, // private
		{"https://10.0.0.1/hook", true, false},
		{"https://169.254.169.254/computeMetadata/v1/", false, false}, // the metadata server
		{"https://[::ffff:169.254.169.254]/", false, false},
		{"https://user:pw@hooks.example.com/x", false, false}, // credentials
		{"https://user@hooks.example.com/x", false, false},
		{"https://hooks.example.com/x#frag", false, false}, // fragment
		{"https://hooks.example.com/x#", false, false},
		{"hooks.example.com/x", false, false}, // relative
		{"//hooks.example.com/x", false, false},
		{"https:hooks.example.com", false, false}, // opaque
		{"https:///x", false, false},              // no host
		{"ftp://hooks.example.com/x", false, false},
		{"javascript:alert(1)", false, false},
		{"https://hooks.example.com:0/x", false, false},
		{"https://hooks.example.com:99999/x", false, false},
		{"https://hooks.example.com/a b", false, false},
		{"https://hooks.example.com/x\n", false, false},
		{"", false, false},
		{"https://hooks.example.com/" + strings.Repeat("a", 2100), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			is := is.New(t)
			err := CheckWebhookURL(tt.url, tt.loopback)
			is.Equal(err == nil, tt.ok) // allowed?
		})
	}
}
