package tracer

// The BPF objects and their Go bindings are committed; `make generate`
// rebuilds them with Debian's clang-16. -idirafter finds <asm/types.h> in
// Debian's multiarch include directory on amd64 and arm64.
//go:generate go tool bpf2go -cc clang-16 -strip llvm-strip-16 -target bpfel -type event -type counter -type event_kind -type event_flag -type hook -type limits -type conn_record -type conn -type slot -type conn_flag -type record_flag bpf ../bpf/tcpscope.bpf.c -- -I../headers -I../bpf -O2 -mcpu=v3 -g -Wall -Werror -idirafter /usr/include/x86_64-linux-gnu -idirafter /usr/include/aarch64-linux-gnu
