// Command fakeplugin is a CNI plugin for tests. It appends every call it
// gets (command, CNI_* environment and the config it read on stdin) as a
// JSON line to the file named by the config's "record" key, then behaves
// as the config says:
//
//	"result": {...}            ADD prints this result (cniVersion filled in);
//	                           without it ADD passes prevResult through, or
//	                           prints an empty result.
//	"fail": {"ADD": {"code": 11, "msg": "..."}}
//	                           the command fails with this CNI error.
//	"hang": "ADD"              the command sleeps until killed.
//
// VERSION reports CNI versions 0.3.0 to 1.0.0.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

type config struct {
	CNIVersion string                     `json:"cniVersion"`
	Record     string                     `json:"record"`
	Result     map[string]any             `json:"result"`
	PrevResult map[string]any             `json:"prevResult"`
	Fail       map[string]json.RawMessage `json:"fail"`
	Hang       string                     `json:"hang"`
}

// Call is one recorded invocation; the tests decode the same shape.
type Call struct {
	Command     string         `json:"command"`
	ContainerID string         `json:"containerID"`
	NetNS       string         `json:"netns"`
	IfName      string         `json:"ifname"`
	Args        string         `json:"args"`
	Path        string         `json:"path"`
	Plugin      string         `json:"plugin"`
	Config      map[string]any `json:"config"`
}

func main() {
	cmd := os.Getenv("CNI_COMMAND")
	if cmd == "VERSION" {
		fmt.Print(`{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}`)
		return
	}
	stdin, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(999, "read stdin: "+err.Error())
	}
	var conf config
	if err := json.Unmarshal(stdin, &conf); err != nil {
		fail(6, "decode config: "+err.Error())
	}
	var raw map[string]any
	_ = json.Unmarshal(stdin, &raw)
	if conf.Record != "" {
		record(conf.Record, Call{
			Command:     cmd,
			ContainerID: os.Getenv("CNI_CONTAINERID"),
			NetNS:       os.Getenv("CNI_NETNS"),
			IfName:      os.Getenv("CNI_IFNAME"),
			Args:        os.Getenv("CNI_ARGS"),
			Path:        os.Getenv("CNI_PATH"),
			Plugin:      os.Args[0],
			Config:      raw,
		})
	}
	if conf.Hang == cmd {
		time.Sleep(time.Hour)
	}
	if e, ok := conf.Fail[cmd]; ok {
		os.Stdout.Write(e)
		os.Exit(1)
	}
	if cmd != "ADD" {
		return
	}
	res := conf.Result
	if res == nil {
		res = conf.PrevResult
	}
	if res == nil {
		res = map[string]any{}
	}
	res["cniVersion"] = conf.CNIVersion
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fail(999, err.Error())
	}
}

// record appends c under an exclusive lock: plugins of concurrent calls
// write to the same file.
func record(path string, c Call) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fail(999, err.Error())
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		fail(999, err.Error())
	}
	b, _ := json.Marshal(c)
	if _, err := f.Write(append(b, '\n')); err != nil {
		fail(999, err.Error())
	}
}

func fail(code int, msg string) {
	json.NewEncoder(os.Stdout).Encode(map[string]any{"cniVersion": "1.0.0", "code": code, "msg": msg})
	os.Exit(1)
}
