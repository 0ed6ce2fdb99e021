// The single translation unit that compiles Asio and Beast
// (BOOST_*_SEPARATE_COMPILATION is defined for the whole project).
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
