#include "auth/auth.hpp"

#include <cctype>

#include "common/util.hpp"

namespace skylab::auth {

std::optional<std::string_view> token_from_authorization(std::string_view h) {
  auto sp = h.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  std::string scheme(h.substr(0, sp));
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "token" && scheme != "bearer") return std::nullopt;
  auto rest = h.substr(sp + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
  if (rest.empty()) return std::nullopt;
  return rest;
}

bool AdminTokenAuthenticator::matches(std::string_view presented) const {
  return !presented.empty() && !token_.empty() && util::secure_equals(presented, token_);
}

Identity AdminTokenAuthenticator::admin_identity() {
  Identity id;
  id.username = "admin";
  id.admin = true;
  id.via = Via::kAdminToken;
  id.credential_id = "admin-token";
  return id;
}

std::optional<Identity> AdminTokenAuthenticator::authenticate(const Credentials& creds) const {
  std::string_view presented;
  if (!creds.authorization_header.empty()) {
    auto t = token_from_authorization(creds.authorization_header);
    if (!t) return std::nullopt;
    presented = *t;
  } else {
    presented = creds.query_token;
  }
  if (!matches(presented)) return std::nullopt;
  return admin_identity();
}

}  // namespace skylab::auth
