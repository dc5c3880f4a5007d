// edgepack TVM runner: loads an exported Relax library with libtvm_runtime / libtvm_ffi (no Python)
// and runs int8 images through it, one batch-1 call per image.
//
//   runner MODEL.so INPUT.bin OUTPUT.bin N C H W CLASSES DTYPE
//
// DTYPE is int8 or float32 (input and output alike). INPUT.bin holds N*C*H*W values (NCHW),
// OUTPUT.bin receives N*CLASSES values.
// Prints one line "ok N" on success; any error goes to stderr with exit code 1.
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

namespace ffi = tvm::ffi;

struct CPUAlloc {
  void AllocData(DLTensor* t) { t->data = std::malloc(ffi::GetDataSize(*t)); }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

static std::vector<char> read_file(const char* path, size_t expect) {
  std::vector<char> buf(expect);
  FILE* f = std::fopen(path, "rb");
  if (!f || std::fread(buf.data(), 1, expect, f) != expect) {
    std::fprintf(stderr, "cannot read %zu bytes from %s\n", expect, path);
    std::exit(1);
  }
  std::fclose(f);
  return buf;
}

int main(int argc, char** argv) {
  if (argc != 10 || (std::strcmp(argv[9], "int8") && std::strcmp(argv[9], "float32"))) {
    std::fprintf(stderr, "usage: %s MODEL.so INPUT.bin OUTPUT.bin N C H W CLASSES int8|float32\n", argv[0]);
    return 2;
  }
  const bool is_float = std::strcmp(argv[9], "float32") == 0;
  const size_t elem = is_float ? 4 : 1;
  const int64_t n = std::atoll(argv[4]), c = std::atoll(argv[5]), h = std::atoll(argv[6]),
                w = std::atoll(argv[7]), classes = std::atoll(argv[8]);
  const bool vector = h == 0 && w == 0;  // a model of (1, C) vectors is given H = W = 0
  const size_t image = static_cast<size_t>(vector ? c : c * h * w) * elem;
  const size_t out_bytes = static_cast<size_t>(classes) * elem;
  try {
    std::vector<char> input = read_file(argv[2], image * n);
    std::vector<char> output(out_bytes * n);
    ffi::Module lib = ffi::Module::LoadFromFile(argv[1]);
    ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2 /* pooled */);
    ffi::Function run = vm->GetFunction("main").value();
    DLDevice cpu{kDLCPU, 0};
    DLDataType dtype = is_float ? DLDataType{kDLFloat, 32, 1} : DLDataType{kDLInt, 8, 1};
    int64_t shape[4] = {1, c, h, w};
    ffi::Tensor x = ffi::Tensor::FromNDAlloc(CPUAlloc(), ffi::ShapeView(shape, vector ? 2 : 4), dtype, cpu);
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(x.data_ptr(), input.data() + i * image, image);
      ffi::Tensor y = run(x).cast<ffi::Tensor>();
      if (ffi::GetDataSize(y) != out_bytes) {
        std::fprintf(stderr, "model output has %zu bytes, expected %zu\n", ffi::GetDataSize(y), out_bytes);
        return 1;
      }
      std::memcpy(output.data() + i * out_bytes, y.data_ptr(), out_bytes);
    }
    FILE* f = std::fopen(argv[3], "wb");
    if (!f || std::fwrite(output.data(), 1, output.size(), f) != output.size()) {
      std::fprintf(stderr, "cannot write %s\n", argv[3]);
      return 1;
    }
    std::fclose(f);
    std::printf("ok %lld\n", static_cast<long long>(n));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "runner error: %s\n", e.what());
    return 1;
  }
  return 0;
}
