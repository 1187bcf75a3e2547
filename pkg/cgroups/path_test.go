package cgroups

import "testing"

func TestResolve(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "cgroupfs container", in: "/cri-runtimed/pod1/ctr1", want: "/cri-runtimed/pod1/ctr1"},
		{name: "kubelet cgroupfs", in: "/kubepods/burstable/podabc/0123", want: "/kubepods/burstable/podabc/0123"},
		{name: "relative made absolute", in: "kubepods/pod1", want: "/kubepods/pod1"},
		{name: "dotdot cannot climb out", in: "/../../etc", want: "/etc"},
		{name: "trailing slash", in: "/a/b/", want: "/a/b"},
		{name: "systemd scope", in: "kubepods-burstable-podabc.slice:cri-runtimed:0123",
			want: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podabc.slice/cri-runtimed-0123.scope"},
		{name: "systemd no prefix", in: "system.slice::ctr", want: "/system.slice/ctr.scope"},
		{name: "systemd default slice", in: ":cri-runtimed:ctr", want: "/system.slice/cri-runtimed-ctr.scope"},
		{name: "systemd root slice", in: "-.slice:p:ctr", want: "/p-ctr.scope"},
		{name: "systemd slice unit", in: "kubepods.slice:p:kubepods-besteffort.slice", want: "/kubepods.slice/kubepods-besteffort.slice"},
		{name: "bare slice (pod parent)", in: "kubepods-besteffort-pod1.slice",
			want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"},
		{name: "empty", in: "", wantErr: true},
		{name: "systemd bad slice", in: "kubepods--x.slice:p:c", wantErr: true},
		{name: "systemd slice without suffix", in: "kubepods:p:c", wantErr: true},
		{name: "systemd empty name", in: "a.slice:p:", wantErr: true},
		{name: "systemd name with slash", in: "a.slice:p:x/y", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Resolve(%q) = %q, want error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Resolve(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
