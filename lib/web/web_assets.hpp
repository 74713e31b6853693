#pragma once
// The status page's files, embedded at build time from lib/web/ (cmake/embed_web.cmake).
#include <span>
#include <string_view>

namespace kpsd {

struct WebAsset {
  std::string_view path;  // "/" for index.html, "/static/NAME" for the rest
  std::string_view content_type;
  std::string_view body;
};

std::span<const WebAsset> web_assets();

}  // namespace kpsd
