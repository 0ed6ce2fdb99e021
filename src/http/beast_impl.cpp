// The single translation unit that compiles Asio and Beast
// (BOOST_*_SEPARATE_COMPILATION is defined for the whole project), TLS
// (asio::ssl over OpenSSL) included.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
