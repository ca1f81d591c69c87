// SecretBytes: the bytes of a secret (an Ed25519 private key's seed, a
// case's AES data key, the node's master key). Move-only, so that a secret is
// never copied by accident into memory nobody wipes; its bytes are
// overwritten (OPENSSL_cleanse, which the compiler may not optimise away)
// when it is destroyed or assigned over. A moved-from SecretBytes is empty.
//
// Not thread-safe for writes (assignment); const use from many threads is.
#ifndef CORRIDOR_LEDGER_CRYPTO_SECRET_H_
#define CORRIDOR_LEDGER_CRYPTO_SECRET_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace corridor {

class SecretBytes {
 public:
  SecretBytes() = default;
  // Takes the bytes of `bytes` and wipes the string's own buffer.
  explicit SecretBytes(std::string&& bytes);
  // A copy of `bytes` (the caller wipes its own copy, if it has one).
  static SecretBytes CopyOf(absl::string_view bytes);
  // `n` bytes from the OpenSSL CSPRNG.
  static SecretBytes Random(size_t n);

  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes();

  // The bytes; valid while this object lives and is not assigned over.
  absl::string_view view() const { return absl::string_view(data_.get(), size_); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Test hook: called with every buffer just wiped, before it is freed (the
  // test checks it holds only zero bytes). Empty (the default) to stop. Not
  // for concurrent use.
  static void SetWipeObserverForTesting(
      std::function<void(const char* data, size_t size)> observer);

 private:
  void Wipe();
  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
};

// Overwrites the bytes of `s` (OPENSSL_cleanse); for the transient
// std::strings a secret passes through (a PEM being parsed).
void WipeString(std::string& s);

}  // namespace corridor

#endif  // CORRIDOR_LEDGER_CRYPTO_SECRET_H_
