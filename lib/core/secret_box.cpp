#include "core/secret_box.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <stdexcept>
#include <unistd.h>

namespace kpsd {

namespace {

constexpr std::string_view magic = "kpsd-box1";
constexpr std::size_t key_bytes = 32, nonce_bytes = 12, tag_bytes = 16;

struct CipherFree {
  void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using Cipher = std::unique_ptr<EVP_CIPHER_CTX, CipherFree>;

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    throw std::runtime_error("no random bytes from OpenSSL");
  return out;
}

// Reads the key file, or makes it (O_EXCL: two processes never make two keys).
Secret key_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    Secret key(random_bytes(key_bytes));
    bool ok = ::write(fd, key.reveal().data(), key_bytes) == static_cast<ssize_t>(key_bytes) &&
              ::fsync(fd) == 0;
    int error = errno;
    ::close(fd);
    if (!ok) {
      ::unlink(path.c_str());
      throw std::runtime_error("cannot write the key file " + path + ": " + std::strerror(error));
    }
    return key;
  }
  if (errno != EEXIST)
    throw std::runtime_error("cannot make the key file " + path + ": " + std::strerror(errno));
  fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw std::runtime_error("cannot read the key file " + path + ": " + std::strerror(errno));
  std::string bytes(key_bytes + 1, '\0');
  ssize_t n = ::read(fd, bytes.data(), bytes.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(key_bytes)) {
    OPENSSL_cleanse(bytes.data(), bytes.size());
    throw std::runtime_error(
        "the key file " + path + " does not hold 32 bytes: restore it, or " +
        "move it aside (jobs queued with a key then fail: enqueue them again)");
  }
  bytes.resize(key_bytes);
  return Secret(std::move(bytes));
}

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

SecretBox SecretBox::for_database(const std::string& database_path) {
  if (database_path.empty() || database_path == ":memory:")
    return SecretBox(Secret(random_bytes(key_bytes)));
  return SecretBox(key_file(database_path + ".key"));
}

bool SecretBox::sealed(std::string_view stored) noexcept {
  return stored.size() >= magic.size() + nonce_bytes + tag_bytes && stored.starts_with(magic);
}

std::string SecretBox::seal(std::string_view plaintext) const {
  std::string nonce = random_bytes(nonce_bytes);
  std::string out;
  out.reserve(magic.size() + nonce_bytes + plaintext.size() + tag_bytes);
  out.append(magic).append(nonce);
  std::size_t at = out.size();
  out.resize(at + plaintext.size() + tag_bytes);
  auto* cipher_out = reinterpret_cast<unsigned char*>(out.data() + at);
  Cipher c(EVP_CIPHER_CTX_new());
  int len = 0, final_len = 0;
  bool ok = c &&
            EVP_EncryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, bytes_of(key_.reveal()),
                               bytes_of(nonce)) == 1 &&
            EVP_EncryptUpdate(c.get(), cipher_out, &len, bytes_of(plaintext),
                              static_cast<int>(plaintext.size())) == 1 &&
            EVP_EncryptFinal_ex(c.get(), cipher_out + len, &final_len) == 1 &&
            EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(tag_bytes),
                                cipher_out + plaintext.size()) == 1;
  if (!ok) throw std::runtime_error("sealing a job's key failed (OpenSSL AES-256-GCM)");
  return out;
}

std::optional<Secret> SecretBox::open(std::string_view stored) const {
  if (!sealed(stored)) return std::nullopt;
  std::string_view nonce = stored.substr(magic.size(), nonce_bytes);
  std::string_view body = stored.substr(magic.size() + nonce_bytes);
  std::string_view ciphertext = body.substr(0, body.size() - tag_bytes);
  std::string tag(body.substr(body.size() - tag_bytes));
  Secret plain(std::string(ciphertext.size(), '\0'));
  auto* out = reinterpret_cast<unsigned char*>(const_cast<char*>(plain.reveal().data()));
  Cipher c(EVP_CIPHER_CTX_new());
  int len = 0, final_len = 0;
  bool ok = c &&
            EVP_DecryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, bytes_of(key_.reveal()),
                               bytes_of(nonce)) == 1 &&
            EVP_DecryptUpdate(c.get(), out, &len, bytes_of(ciphertext),
                              static_cast<int>(ciphertext.size())) == 1 &&
            EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(tag_bytes),
                                tag.data()) == 1 &&
            EVP_DecryptFinal_ex(c.get(), out + len, &final_len) == 1;
  if (!ok) return std::nullopt;  // `plain` is zeroed as it goes
  return plain;
}

}  // namespace kpsd
