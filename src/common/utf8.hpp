// UTF-8 validation (RFC 3629), whole or incremental. Incremental for WebSocket text: a message may
// arrive in fragments split anywhere, even inside a character, and RFC 6455 wants it failed at
// the first byte that cannot belong to a well-formed sequence (Autobahn 6.x checks both). Whole
// for names: AMQP queue and exchange names, the gateway's user ids and rooms.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace warren::common {

// The decoder state is one byte; a validator can be kept in a parser and carried across frames.
// Well-formed sequences (RFC 3629 section 4), which the states below implement:
//
//   first byte   second   third    fourth
//   00..7F
//   C2..DF       80..BF
//   E0           A0..BF   80..BF              (no overlong 3-byte forms)
//   E1..EC       80..BF   80..BF
//   ED           80..9F   80..BF              (no surrogates U+D800..DFFF)
//   EE..EF       80..BF   80..BF
//   F0           90..BF   80..BF   80..BF     (no overlong 4-byte forms)
//   F1..F3       80..BF   80..BF   80..BF
//   F4           80..8F   80..BF   80..BF     (nothing above U+10FFFF)
//
// C0, C1 and F5..FF never appear.
class utf8_validator {
 public:
  enum state : uint8_t {
    accept = 0,  // at a character boundary
    tail1,       // one more 80..BF
    tail2,       // two more 80..BF
    tail3,       // three more 80..BF
    after_e0,    // A0..BF, then one more
    after_ed,    // 80..9F, then one more
    after_f0,    // 90..BF, then two more
    after_f4,    // 80..8F, then two more
    reject,      // invalid; stays here
  };

  // Returns false once the input so far is invalid (and for every call after that).
  bool feed(const uint8_t* p, size_t n);
  bool feed(std::string_view s) {
    return feed(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  bool feed_byte(uint8_t b) {
    state_ = step(state_, b);
    return state_ != reject;
  }

  // True when everything fed ends on a character boundary: a text message may end here.
  bool complete() const { return state_ == accept; }
  bool failed() const { return state_ == reject; }
  state get() const { return state_; }
  void set(state s) { state_ = s; }
  void reset() { state_ = accept; }

  static state step(state s, uint8_t b);

 private:
  state state_ = accept;
};

// A whole string: well-formed and not ending inside a character.
bool is_valid_utf8(std::string_view s);

}  // namespace warren::common
