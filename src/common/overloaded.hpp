// The "overloaded" visitor idiom for std::visit over several lambdas.
#pragma once

namespace warren::common {

template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

}  // namespace warren::common
