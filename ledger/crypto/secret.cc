#include "ledger/crypto/secret.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <cstring>
#include <utility>

namespace corridor {
namespace {

std::function<void(const char*, size_t)>& WipeObserver() {
  static auto* const observer = new std::function<void(const char*, size_t)>;
  return *observer;
}

}  // namespace

SecretBytes::SecretBytes(std::string&& bytes) : data_(new char[bytes.size()]), size_(bytes.size()) {
  if (size_ > 0) memcpy(data_.get(), bytes.data(), size_);
  WipeString(bytes);
  bytes.clear();
}

SecretBytes SecretBytes::CopyOf(absl::string_view bytes) {
  SecretBytes out;
  out.data_.reset(new char[bytes.size()]);
  out.size_ = bytes.size();
  if (out.size_ > 0) memcpy(out.data_.get(), bytes.data(), out.size_);
  return out;
}

SecretBytes SecretBytes::Random(size_t n) {
  SecretBytes out;
  out.data_.reset(new char[n]);
  out.size_ = n;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data_.get()), static_cast<int>(n)) != 1) {
    abort();  // No randomness means no safe keys: never continue.
  }
  return out;
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::move(other.data_)), size_(std::exchange(other.size_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe();
    data_ = std::move(other.data_);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SecretBytes::~SecretBytes() { Wipe(); }

void SecretBytes::Wipe() {
  if (data_ == nullptr) return;
  OPENSSL_cleanse(data_.get(), size_);
  if (WipeObserver()) WipeObserver()(data_.get(), size_);
  data_.reset();
  size_ = 0;
}

void SecretBytes::SetWipeObserverForTesting(
    std::function<void(const char* data, size_t size)> observer) {
  WipeObserver() = std::move(observer);
}

void WipeString(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
}

}  // namespace corridor
