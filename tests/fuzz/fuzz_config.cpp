// Fuzzes the reading of a configuration file (app/config: TOML through toml++, then each key
// checked and converted). The input is the file's text, handed to parse_config as
// `warren --config <file>` through an in-memory file, the path a broker's start-up takes. Checks:
// no crash and no exception escapes; a refusal is exit code 2 with a message naming the file; an
// accepted file gives a usable configuration (at least one worker, the control socket resolved).
// toml++ is Debian's shared library, so coverage guides the fuzzer through config.cpp only.
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "app/config.hpp"
#include "fuzz_support.hpp"

using namespace warren;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int fd = [] {
    int f = memfd_create("warren-fuzz-config", 0);
    FUZZ_CHECK(f >= 0);
    return f;
  }();
  FUZZ_CHECK(ftruncate(fd, 0) == 0);
  FUZZ_CHECK(pwrite(fd, data, size, 0) == ssize_t(size));
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  std::string args[] = {"warren", "--config", path};
  char* argv[] = {args[0].data(), args[1].data(), args[2].data(), nullptr};
  auto r = app::parse_config(3, argv);
  if (auto* e = std::get_if<app::exit_request>(&r)) {
    FUZZ_CHECK(e->code == 2);
    FUZZ_CHECK(e->text.rfind(path, 0) == 0);
    return 0;
  }
  const auto& c = std::get<app::config>(r);
  FUZZ_CHECK(c.workers >= 1);
  FUZZ_CHECK(c.ctl_socket != app::ctl_socket_in_data_dir);
  FUZZ_CHECK(c.config_file == path);
  return 0;
}
