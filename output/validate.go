package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var (
	schemaOnce sync.Once
	schemaVal  *jsonschema.Schema
	schemaErr  error
)

func compiledSchema() (*jsonschema.Schema, error) {
	schemaOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
		if err != nil {
			schemaErr = err
			return
		}
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		const url = "https://tcpscope.invalid/schema/export.schema.json"
		if err := c.AddResource(url, doc); err != nil {
			schemaErr = err
			return
		}
		schemaVal, schemaErr = c.Compile(url)
	})
	return schemaVal, schemaErr
}

// ValidateExport checks a .jsonl export line by line, or a .json export as
// one document, against Schema.
func ValidateExport(path string) error { return ValidateExportSample(path, 0) }

// ValidateExportSample checks at most the first n lines of a .jsonl export,
// and its last line, against Schema (all of them when n is 0).
func ValidateExportSample(path string, n int) error {
	sch, err := compiledSchema()
	if err != nil {
		return fmt.Errorf("compiling schema: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if bytes.HasPrefix(data, zstdMagic) {
		if data, err = decompressAll(data); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return validateData(sch, path, data, strings.HasSuffix(path, ".json"), n)
}

// validateData checks data, a .json document or a .jsonl, named path.
func validateData(sch *jsonschema.Schema, path string, data []byte, document bool, n int) error {
	validate := func(where string, raw []byte) error {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return fmt.Errorf("%s: invalid JSON: %w", where, err)
		}
		if err := sch.Validate(v); err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		return nil
	}
	if document {
		if !json.Valid(data) {
			return fmt.Errorf("%s: invalid JSON", path)
		}
		return validate(path, data)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 64<<20)
	var last []byte
	line := 0
	for line = 1; sc.Scan(); line++ {
		if n > 0 && line > n {
			last = append(last[:0], sc.Bytes()...)
			continue
		}
		if err := validate(fmt.Sprintf("%s:%d", path, line), sc.Bytes()); err != nil {
			return err
		}
	}
	if last != nil {
		if err := validate(fmt.Sprintf("%s:%d", path, line-1), last); err != nil {
			return err
		}
	}
	return sc.Err()
}
